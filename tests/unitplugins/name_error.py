"""A module of jobs that fails while it is imported: a name used before it is defined, in a
function that the module's own code calls, as a typo would."""

from jobkit import Job, register_job


def default_greeting() -> str:
    return greeting  # noqa: F821 - the mistake the tests show


@register_job(name="unitplugins.Misspelt")
class Misspelt(Job):
    greeting = default_greeting()

    def run(self) -> None:
        print(self.greeting)
