"""The Arena tab's layout and events; `studio.ui.blocks` calls `arena_tab()` inside its Tabs.

Public API endpoints (gradio_client): `arena_next` (a pair to judge), `arena_vote` (a vote on
a round), `arena_prepare`, `arena_ratings`, `arena_export`, `arena_import`. The tab's own
buttons call the same handlers through private events. `arena_next` computes missing cut-outs,
so it shares the one inference slot with Compare and Benchmark; votes only write the
database and run four at a time.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from studio import settings
from studio.arena import images as arena_images
from studio.arena import rounds
from studio.data.sources import catalogue_choices
from studio.errors import StudioError
from studio.ui import arena as h
from studio.ui.uploads import UploadError

INFERENCE = "inference"  # the queue slot of every event that may run a model (as in blocks.py)
VOTES = "arena_votes"
ERROR_TITLE = "Cannot do that"
BUTTONS = {"a": "arena-vote-a", "b": "arena-vote-b", "tie": "arena-vote-tie", "both_bad": "arena-vote-bad"}
BLANK_PROMPT = "Choose an image set and at least two models, then **Start judging**."

# The keys, in one place: the keyboard script and the help line are both made from this table,
# so the help cannot say one thing while the keys do another.
KEYS: dict[str, tuple[str, ...]] = {"a": ("A", "←", "1"), "b": ("B", "→", "2"), "tie": ("T", "3"),
                                    "both_bad": ("X", "4")}
KEY_NAMES = {"←": "arrowleft", "→": "arrowright"}  # KeyboardEvent.key, lower-cased
CHOICE_LABELS = {"a": "A better", "b": "B better", "tie": "Tie", "both_bad": "Both bad"}
ZOOMS = ["off", "2×", "4×"]


def _key_map() -> dict[str, str]:
    return {KEY_NAMES.get(k, k.lower()): BUTTONS[choice] for choice, keys in KEYS.items() for k in keys}


# Keyboard shortcuts, the synchronised zoom and the tab's few styles. Keys are ignored while typing
# in a field and when held down (auto-repeat would vote on the next pair unseen).
KEYS_JS_TEMPLATE = """
if (!window.__studioArenaKeys) {
  window.__studioArenaKeys = true;
  const keys = __KEYMAP__;
  window.__studioArenaKeyMap = keys;
  const typing = (el) => {
    if (!el) return false;
    const tag = (el.tagName || '').toLowerCase();
    if (tag === 'textarea' || tag === 'select' || el.isContentEditable) return true;
    return tag === 'input' && !['radio', 'checkbox', 'button', 'submit'].includes((el.type || '').toLowerCase());
  };
  // one keyboard vote per round: a second press before the next pair shows is dropped
  let votedOn = null;
  const roundShown = () => {
    const m = (document.querySelector('#arena-prompt')?.innerText || '').match(/round ([0-9a-f]{8})/);
    return m ? m[1] : null;
  };
  document.addEventListener('keydown', (e) => {
    if (e.repeat || e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    const id = keys[(e.key || '').toLowerCase()];
    const btn = id && document.getElementById(id);
    if (!btn || btn.offsetParent === null || btn.disabled) return;
    const shown = roundShown();
    if (!shown || shown === votedOn) return;
    votedOn = shown;
    e.preventDefault();
    btn.click();
  });
  // The zoom: hovering (or dragging a finger over) any of the three pictures magnifies the same
  // spot of all three, so fine detail (hair, edges) can be compared side by side.
  const VIEWS = ['#arena-original', '#arena-view-a', '#arena-view-b'];
  const zoomLevel = () => {
    const v = document.querySelector('#arena-zoom input:checked')?.value || 'off';
    const z = parseFloat(v);
    return isFinite(z) ? z : 1;
  };
  const imgs = () => VIEWS.map((s) => document.querySelector(s + ' img')).filter(Boolean);
  const reset = () => imgs().forEach((im) => { im.style.transform = ''; });
  const onMove = (e) => {
    const z = zoomLevel();
    const target = e.target.closest && e.target.closest(VIEWS.join(','));
    if (!target || z <= 1) { reset(); return; }
    const im = target.querySelector('img');
    if (!im) return;
    const r = im.getBoundingClientRect();
    const px = Math.min(100, Math.max(0, (e.clientX - r.left) / r.width * 100));
    const py = Math.min(100, Math.max(0, (e.clientY - r.top) / r.height * 100));
    imgs().forEach((other) => {
      other.style.transformOrigin = px + '% ' + py + '%';
      other.style.transform = 'scale(' + z + ')';
    });
  };
  document.addEventListener('pointermove', onMove, {passive: true});
  document.addEventListener('pointerdown', onMove, {passive: true});
  document.addEventListener('pointerleave', reset);
  document.addEventListener('pointerout', (e) => {
    if (!e.relatedTarget || !(e.relatedTarget.closest && e.relatedTarget.closest(VIEWS.join(',')))) reset();
  });
}
if (!document.getElementById('studio-arena-style')) {
  const s = document.createElement('style');
  s.id = 'studio-arena-style';
  s.textContent = `
    #arena-original img, #arena-view-a img, #arena-view-b img { object-fit: contain; transition: transform 60ms; }
    #arena-original, #arena-view-a, #arena-view-b { overflow: hidden; }
    .arena-vote button, button.arena-vote { min-height: 48px; font-size: 1.02rem; }
    #arena-prompt { min-height: 1.6em; }
    #arena-reveal { min-height: 1.6em; border-left: 4px solid var(--color-accent); padding: 2px 12px;
      background: var(--block-background-fill); border-radius: 6px; }
    #arena-ratings td, #arena-matrix td { font-variant-numeric: tabular-nums; }
    .arena-keys kbd { border: 1px solid var(--border-color-primary); border-bottom-width: 2px; border-radius: 4px;
      padding: 0 5px; font-size: 0.82rem; background: var(--background-fill-secondary); }
    .arena-keys .k { white-space: nowrap; margin-right: 10px; }
  `;
  document.head.appendChild(s);
}
"""


KEYS_JS = KEYS_JS_TEMPLATE.replace("__KEYMAP__", json.dumps(_key_map()))


def keys_help() -> str:
    """The key help under the buttons, from KEYS (each group says which button it presses)."""
    groups = []
    for choice, keys in KEYS.items():
        kbds = " ".join(f"<kbd>{k}</kbd>" for k in keys)
        groups.append(f'<span class="k" data-vote="{choice}">{kbds} {CHOICE_LABELS[choice]}</span>')
    return ('<div class="arena-keys"><sub>Keys: ' + " ".join(groups) +
            " · Names are revealed after each vote.</sub></div>")


def user_errors(fn: Callable) -> Callable:
    """Errors a user can act on become a gr.Error toast (as blocks.user_errors does)."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except (UploadError, StudioError) as exc:
            raise gr.Error(str(exc), title=ERROR_TITLE, print_exception=False) from None

    return wrapped


# --- event functions (thin: the game is in studio.arena.rounds, the page's parts in studio.ui.arena) ---

def picker_choices() -> list[tuple[str, str]]:
    """The model picker's choices: what the arena can judge here; on a hosted app, the server's
    candidates (the picker is read-only there: the server draws from its own set)."""
    if settings.on_spaces():
        return [(vid, vid) for vid in rounds.server_candidates()]
    return rounds.variant_choices()


def on_open(voter: str | None):
    """When the tab opens: the browser's anonymous voter id (made once, kept in localStorage),
    the dataset and past-run pickers filled, and the model picker updated (new builds)."""
    voter = voter or rounds.new_voter_id()
    runs = arena_images.past_runs()
    return (voter, voter, gr.Dropdown(choices=catalogue_choices()),
            gr.Dropdown(choices=runs, value=runs[0][1] if runs else None),
            gr.Dropdown(choices=picker_choices()))


def source_changed(source: str):
    return (gr.Dropdown(visible=source == h.SOURCE_FOLDER), gr.File(visible=source == h.SOURCE_ZIP),
            gr.Dropdown(visible=source == h.SOURCE_RUN))


@user_errors
def prepare(source: str, dataset: str | None, zip_file: Any, run: str | None, limit: float | None):
    """Resolve the chosen image set to its spec (a zip is extracted once); returns (spec, note)."""
    return h.prepare(source, dataset, zip_file, run, limit)


@user_errors
def arena_next(set_spec: str | None, variant_ids: list[str] | None, background: str | None,
               voter_id: str | None, limit: float | None):
    """The next pair to judge: (round JSON, view A, view B, cut-out A RGBA, cut-out B RGBA,
    prompt, voter id, round id). The variants are not in it; `arena_vote` reveals them."""
    from studio.ui import outputs

    r = h.next_round(set_spec, variant_ids, background, voter_id, limit)
    rnd = r["round"]
    # Files, not arrays: Gradio caches an array by rewriting a file named by its content in
    # place, which a concurrent download of the same picture then reads half-written. A file
    # is copied in once, atomically. The names say nothing about the variants.
    folder = outputs.new_dir("arena")
    view_a, view_b = (outputs.write_png(folder, f"{k}.png", img) for k, img in zip("ab", r["views"], strict=True))
    cut_a, cut_b = (outputs.write_png(folder, f"{k}_cutout.png", img)
                    for k, img in zip("ab", r["cutouts"], strict=True))
    prompt = h.prompt_markdown(rnd)
    return rnd, str(view_a), str(view_b), str(cut_a), str(cut_b), prompt, r["voter_id"], rnd["round_id"]


@user_errors
def arena_vote(round_id: str | None, choice: str | None, voter_id: str | None):
    """Record a vote (a | b | tie | both_bad) on a round: (reveal text, acknowledgement JSON).
    Sending the same round id again records nothing more."""
    ack = rounds.vote(round_id, choice, voter_id)
    return h.reveal_markdown(ack), ack


def vote_for(choice: str) -> Callable:
    def fn(round_id: str | None, voter_id: str | None):
        return arena_vote(round_id, choice, voter_id)

    fn.__name__ = f"arena_vote_{choice}"
    return fn


@user_errors
def arena_ratings(variant_ids: list[str] | None, set_spec: str | None, only_this_set: bool,
                  limit: float | None):
    """(ratings table, win-rate matrix, note) for the chosen variants."""
    table, matrix, note = h.ratings_view(variant_ids, set_spec, only_this_set, limit)
    return _styled(table), matrix, note


def _styled(table: dict) -> Any:
    """Grey the rows whose rating is not shown yet (too few votes)."""
    import pandas as pd

    df = pd.DataFrame(table["data"], columns=table["headers"])
    if df.empty:
        return df
    hidden = df["#"] == ""
    return df.style.apply(lambda row: ["color: #9aa0a6" if hidden[row.name] else "" for _ in row], axis=1)


@user_errors
def arena_export():
    path, n = h.export_votes()
    return str(path), f"Exported {n} votes."


@user_errors
def arena_import(csv_file: Any):
    added, skipped = h.import_votes(csv_file)
    return f"Imported {added} votes; {skipped} already here (same vote id) skipped."


def arena_original(set_spec: str | None, limit: float | None, rnd: dict | None):
    """The round's image itself, beside A and B (a file in a fresh download folder)."""
    from studio.ui import outputs

    try:
        rgb = h.original_image(set_spec, limit, rnd)
    except (UploadError, StudioError):
        return None
    if rgb is None:
        return None
    return str(outputs.write_png(outputs.new_dir("arena"), "original.png", rgb))


def prefill(spec: str, variant_ids: list[str], note: str) -> tuple:
    """The tab set to judge one image set (its spec as the folder source) with these variants:
    (tabs, source, dataset, limit, variants, set note)."""
    return (gr.Tabs(selected="arena"), gr.Radio(value=h.SOURCE_FOLDER),
            gr.Dropdown(value=spec, visible=True, allow_custom_value=True), 0,
            gr.Dropdown(choices=picker_choices(), value=list(dict.fromkeys(variant_ids))), note)


def from_link(request: gr.Request):
    """A link such as eval/run.py prints (`?arena_set=SPEC&variants=A,B`): the Arena tab opened on
    that set with those variants, ready to start (the set is checked as any client's is)."""
    params = dict(request.query_params) if request is not None else {}
    spec = (params.get("arena_set") or "").strip()
    if not spec:
        return (gr.skip(),) * 6
    try:
        spec = arena_images.check_spec(spec)
        ids = rounds.parse_variant_ids(params.get("variants") or "")
    except (StudioError, UploadError) as exc:
        return (gr.Tabs(selected="arena"), gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                f"The link's image set cannot be opened: {exc}")
    return prefill(spec, ids or rounds.default_variant_ids(),
                   f"Opened from a link: `{spec}`. Press **Start judging**.")


@dataclass
class ArenaTab:
    """What other tabs need of the Arena: its pickers, and how to start a round from elsewhere."""

    tab: gr.Tab
    source: gr.Radio
    dataset: gr.Dropdown
    limit: gr.Number
    variants: gr.Dropdown
    set_md: gr.Markdown
    start_chain: Callable[[Any], Any]  # chains prepare -> next pair -> original -> ratings after an event


# --- the tab ----------------------------------------------------------------------------------

def arena_tab() -> ArenaTab:
    """Place the Arena tab (call inside `gr.Tabs()`) and wire its events."""
    choices = picker_choices()
    hosted = settings.on_spaces()  # the server picks the candidates, and importing votes is off
    with gr.Tab("Arena", id="arena") as tab:
        gr.HTML("", js_on_load=KEYS_JS, container=False, padding=False, elem_id="arena-keys-js")
        with gr.Row(equal_height=False, elem_id="arena-layout"):
            with gr.Column(scale=1, min_width=260):
                source = gr.Radio(h.SOURCES, value=h.SOURCE_EMBEDDED, label="Images", elem_id="arena-source")
                dataset = gr.Dropdown(label="Catalogue dataset or folder (masks not needed)", choices=[],
                                      value=None, allow_custom_value=True, visible=False, elem_id="arena-dataset")
                zip_file = gr.File(label="Zip of images (masks not needed)", file_types=[".zip"], visible=False)
                run = gr.Dropdown(label="Past benchmark run", choices=[], value=None, visible=False,
                                  elem_id="arena-run")
                limit = gr.Number(value=0, precision=0, minimum=0, label="Images (0: all)", elem_id="arena-limit")
                variants = gr.Dropdown(
                    choices=choices, value=rounds.server_candidates() if hosted else rounds.default_variant_ids(),
                    multiselect=True, interactive=not hosted, elem_id="arena-variants",
                    label="Models (chosen by the server on the hosted app)" if hosted else "Models (trained, installed)")
                background = gr.Radio(list(arena_images.BACKGROUNDS), value=h.DEFAULT_BACKGROUND,
                                      label="Background", elem_id="arena-background")
                start = gr.Button("Start judging", variant="primary", elem_id="arena-start",
                                  elem_classes=["run-button"])
                set_md = gr.Markdown(elem_id="arena-set")
                with gr.Accordion("Votes as CSV", open=False):
                    export_btn = gr.Button("Export votes", size="sm", elem_id="arena-export")
                    export_file = gr.File(label="votes.csv", interactive=False)
                    import_file = gr.File(label="Import a votes CSV", file_types=[".csv"], visible=not hosted)
                    import_btn = gr.Button("Import", size="sm", elem_id="arena-import", visible=not hosted)
                    csv_md = gr.Markdown()
            with gr.Column(scale=4, min_width=300):
                prompt = gr.Markdown(BLANK_PROMPT, elem_id="arena-prompt")
                with gr.Row(equal_height=True, elem_id="arena-views"):
                    original = gr.Image(label="Original", type="filepath", format="png", interactive=False,
                                        height=380, elem_id="arena-original", buttons=["fullscreen"], min_width=100)
                    view_a = gr.Image(label="A", type="filepath", format="png", interactive=False, height=380,
                                      elem_id="arena-view-a", buttons=["fullscreen"], min_width=100)
                    view_b = gr.Image(label="B", type="filepath", format="png", interactive=False, height=380,
                                      elem_id="arena-view-b", buttons=["fullscreen"], min_width=100)
                gr.Radio(ZOOMS, value="2×", label="Zoom: hover over (or drag a finger across) any picture; "
                         "all three magnify the same spot", elem_id="arena-zoom")
                with gr.Row(elem_id="arena-buttons"):
                    btn_a = gr.Button(CHOICE_LABELS["a"], elem_id=BUTTONS["a"], elem_classes=["arena-vote"],
                                      min_width=70)
                    btn_tie = gr.Button(CHOICE_LABELS["tie"], elem_id=BUTTONS["tie"], elem_classes=["arena-vote"],
                                        min_width=70)
                    btn_bad = gr.Button(CHOICE_LABELS["both_bad"], elem_id=BUTTONS["both_bad"],
                                        elem_classes=["arena-vote"], min_width=70)
                    btn_b = gr.Button(CHOICE_LABELS["b"], elem_id=BUTTONS["b"], elem_classes=["arena-vote"],
                                      min_width=70)
                gr.HTML(keys_help(), elem_id="arena-keys-help")
                reveal = gr.Markdown("", elem_id="arena-reveal")
                with gr.Column(elem_id="arena-ratings-section"):
                    gr.Markdown("### Ratings")
                    with gr.Row():
                        only_set = gr.Checkbox(value=False, label="Only votes on this image set", scale=3)
                        refresh = gr.Button("Refresh ratings", size="sm", scale=1, elem_id="arena-refresh")
                    table = gr.Dataframe(label="Ratings (Bradley–Terry with ties, 95 % bootstrap CI)",
                                         interactive=False, wrap=True, elem_id="arena-ratings")
                    matrix = gr.Dataframe(label="Win rate, row against column (votes)", interactive=False,
                                          wrap=True, elem_id="arena-matrix")
                    note = gr.Markdown(elem_id="arena-note")
        # hidden: what the API passes and the page keeps between events
        set_box = gr.Textbox("embedded", visible=False, label="image set")
        voter_box = gr.Textbox("", visible=False, label="voter id")
        round_box = gr.Textbox("", visible=False, label="round id")
        choice_box = gr.Textbox("", visible=False, label="choice")
        round_json = gr.JSON(visible=False, label="round")
        ack_json = gr.JSON(visible=False, label="vote")
        cut_a = gr.Image(visible=False, type="filepath", format="png", image_mode="RGBA", label="cut-out A")
        cut_b = gr.Image(visible=False, type="filepath", format="png", image_mode="RGBA", label="cut-out B")
        next_api = gr.Button(visible=False)
        vote_api = gr.Button(visible=False)
        voter_state = gr.BrowserState(None, storage_key="matting-studio-arena-voter")

    next_inputs = [set_box, variants, background, voter_box, limit]
    next_outputs = [round_json, view_a, view_b, cut_a, cut_b, prompt, voter_box, round_box]
    vote_outputs = [reveal, ack_json]
    rating_inputs = [variants, set_box, only_set, limit]
    rating_outputs = [table, matrix, note]
    infer = {"concurrency_id": INFERENCE, "concurrency_limit": 1}
    votes = {"concurrency_id": VOTES, "concurrency_limit": 4}
    quiet = {"api_visibility": "private", "show_progress": "hidden"}

    def next_pair(event: Any) -> Any:
        """After `event`: the next pair, the original beside it, then the ratings."""
        return event.success(arena_next, inputs=next_inputs, outputs=next_outputs, api_visibility="private",
                             show_progress_on=[prompt], **infer).success(
            arena_original, inputs=[set_box, limit, round_json], outputs=original, **quiet).then(
            arena_ratings, inputs=rating_inputs, outputs=rating_outputs, **quiet)

    def start_chain(event: Any) -> Any:
        return next_pair(event.success(prepare, inputs=[source, dataset, zip_file, run, limit],
                                       outputs=[set_box, set_md], api_visibility="private"))

    # the public API first (a private event would otherwise take the handler's name):
    # one endpoint each, arena_next and arena_vote on hidden buttons
    next_api.click(arena_next, inputs=next_inputs, outputs=next_outputs, api_name="arena_next", **infer)
    vote_api.click(arena_vote, inputs=[round_box, choice_box, voter_box], outputs=vote_outputs,
                   api_name="arena_vote", **votes)
    refresh.click(arena_ratings, inputs=rating_inputs, outputs=rating_outputs, api_name="arena_ratings")

    # the ratings show as soon as the tab opens (provisional ones labelled), not after a vote
    tab.select(on_open, inputs=voter_state, outputs=[voter_box, voter_state, dataset, run, variants], **quiet).then(
        arena_ratings, inputs=rating_inputs, outputs=rating_outputs, **quiet)
    source.change(source_changed, inputs=source, outputs=[dataset, zip_file, run], queue=False, **quiet)

    # the page: start, then a vote reveals the names, loads the next pair and refreshes the ratings
    next_pair(start.click(prepare, inputs=[source, dataset, zip_file, run, limit], outputs=[set_box, set_md],
                          api_name="arena_prepare"))
    for choice, btn in (("a", btn_a), ("b", btn_b), ("tie", btn_tie), ("both_bad", btn_bad)):
        next_pair(btn.click(vote_for(choice), inputs=[round_box, voter_box], outputs=vote_outputs,
                            api_visibility="private", show_progress="hidden", trigger_mode="once", **votes))
    only_set.input(arena_ratings, inputs=rating_inputs, outputs=rating_outputs, **quiet)
    export_btn.click(arena_export, outputs=[export_file, csv_md], api_name="arena_export")
    import_btn.click(arena_import, inputs=import_file, outputs=csv_md, api_name="arena_import").then(
        arena_ratings, inputs=rating_inputs, outputs=rating_outputs, **quiet)
    return ArenaTab(tab, source, dataset, limit, variants, set_md, start_chain)
