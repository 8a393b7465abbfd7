"""Jobs for the unit tests of the command line, registered when the imports setting names this
module."""

from jobkit import Job, register_job


@register_job(name="unitplugins.Greet")
class Greet(Job):
    """Says hello."""

    def __init__(self, name: str = "world"):
        self.name = name

    def run(self) -> None:
        print(f"hello, {self.name}")


@register_job(name="unitplugins.Wave")
class Wave(Job):
    """Waves at everyone in the room, one person after another, for as long as it
    takes: its first sentence runs over two lines.

    What ``jobkit list`` leaves out: the paragraphs after the first.
    """

    def run(self) -> None:
        print("waving")
