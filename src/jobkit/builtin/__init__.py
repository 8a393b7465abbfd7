"""The built-in plugins, each a plain pluggy plugin listed in ``jobkit.plugins.BUILTIN_PLUGINS``."""
