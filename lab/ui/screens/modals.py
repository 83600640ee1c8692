"""Provides the help screen and the yes/no confirmation used before destructive actions."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Markdown

HELP = """\
# maillab

maillab captures mail sent to its three listeners and judges it as a receiving filter would.
It never delivers anything.

## Keys
| key | does |
|---|---|
| `j` `k` `↓` `↑` `g` `G` | move through the messages |
| `tab` / `shift+tab` | move between the list and the tabs |
| `1`–`7` | Verdict, Headers, Text, Parts, Raw, Session, DNS |
| `/` | filter: words, `verdict:fail`, `verdict:refused`, `listener:relay`, `failed:dkim` (Esc clears) |
| `r` / `R` | re-read the zone files and judge the selected / every message again (and look up DNS again) |
| `e` | export the selected message as .eml |
| `s` | save the attachment selected in Parts |
| `y` | copy a swaks command that sends the message again |
| `d` / `D` | delete the selected / every message (asks first) |
| `ctrl+p` | command palette: send the sample messages, re-evaluate, themes |
| `f1` `?` | this help |
| `q` | quit |

## Levels
- **✓ pass**: what receivers want to see.
- **· info**: worth knowing, harmless.
- **! warn**: works, but receivers trust it less, or a provider may refuse it.
- **✗ FAIL**: a receiver would reject it, spam-folder it, or distrust it.
- **⊘ 550**, **⊘ 451**: a row the lab refused (the last reply code) and never accepted; **↻2** on a message:
  it was accepted after 2 refused tries. Their Verdict tab lists the attempts and judges the retries.

The **Verdict** tab starts with what a receiver would do (for the provider profile chosen with
`--profile`: rejected, deferred, sent to spam or delivered), the score out of 10 with the findings that
cost the most, and why. Then one pane per family: the provider's rules with its reply codes, Transport,
Client, Blocklists, SPF, DKIM, DMARC, Sender, Headers, Content; each check shows its evidence (the
record, the mechanism that matched, the selector, the lookup count), its points and a **fix**.

The **DNS** tab explains the From domain's records as a receiver reads them (SPF with its includes
and lookup count, DMARC tag by tag, the DKIM keys the message signs with, MX) and what to change.
It reads your zone overlay files first, so you can draft a record before publishing it.

Fix a record in your zone overlay file, press `r`, and watch the verdict change.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90; max-width: 95%; height: 85%; border: round $accent;
                                  background: $surface; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP)

    def action_dismiss(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape,n", "answer(False)", "No"), Binding("y", "answer(True)", "Yes")]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical { width: 60; height: auto; border: round $error; background: $surface; padding: 1 2; }
    ConfirmScreen Horizontal { height: auto; margin-top: 1; align-horizontal: right; }
    ConfirmScreen Button { margin-left: 2; }
    """

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            with Horizontal():
                yield Button("No", id="no", variant="primary")
                yield Button("Yes, delete", id="yes", variant="error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
