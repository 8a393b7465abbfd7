"""A plugin module that fails while it is imported, as a broken installed plugin would."""

raise RuntimeError("this plugin is broken")
