"""Dreams: pictures the network makes by gradient ascent (feature visualisation, class models,
DeepDream, style transfer), growing live, cancellable, queued fairly with everyone else's heavy work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import streamlit as st

from app.analyses import dataset_examples as D
from app.analyses import dream_store, dreams
from app.base.errors import LensError
from app.networks.images import image_key, load_image
from app.networks.models import LoadedModel
from app.pictures import figures
from app.serving import jobs
from pages import cache, common

EXPLAIN = {
    "features": (
        "Start from faint noise and change the picture, step by step, so that one channel of a layer fires as "
        "strongly as possible (gradient ascent on the picture, not on the weights). The picture is optimised "
        "in Fourier space with more weight on coarse patterns, and every step sees it slightly shifted, zoomed "
        "and rotated, so only patterns that are robust to that can grow — the recipe of Olah et al., "
        "*Feature Visualization* (2017)."
    ),
    "class": (
        "The same idea aimed at the very last layer: grow the picture that maximises one class score "
        "(Simonyan et al., 2014). It shows what the network has learned to look for in that class, which is "
        "often not what a person would draw."
    ),
    "deepdream": (
        "Instead of starting from noise, start from your picture and make whatever a layer already sees "
        "*louder*: each step nudges the pixels to raise the layer's squared activations. It runs octave by "
        "octave, from a small copy of the picture up to full size, so the patterns grow at several scales."
    ),
    "style": (
        "Gatys et al. (2016): keep the deep features of your picture (its *content*) while matching the "
        "Gram matrices of the style picture's features at several layers (its *style*: which features fire "
        "together, regardless of where). The picture starts as your photo and moves towards the style."
    ),
}


def _session_jobs() -> dict[str, jobs.Job]:
    return st.session_state.setdefault("dream_jobs", {})


def _busy() -> bool:
    return any(job.active for job in _session_jobs().values())


HEARTBEAT_S = 5  # how often an open page tells its jobs it is still there (jobs.WATCH_TIMEOUT)


def _stored(kind: str, **settings) -> Path | None:
    """Where this dream is kept once made (app.analyses.dream_store); None for a network trained in this
    session, whose dreams nobody else will ask for."""
    return None if "@" in model_key else dream_store.dream_path(model, kind, **settings)


def _start(key: str, label: str, work: Callable[[jobs.Job], dreams.Dream], request: tuple, stored: Path | None) -> None:
    """Show the stored dream at once, or submit it to the fair queue; `request` (every parameter, seed
    included) lets identical requests share one run, and the finished dream is stored for everyone.

    The job stops by itself if this page stops telling it someone watches (`_heartbeat`): a closed
    tab must not keep a heavy slot busy.
    """
    dream = dream_store.read(stored) if stored is not None else None
    if dream is not None:
        _session_jobs()[key] = jobs.finished(dream, label, dream.seconds)
    else:
        try:
            _session_jobs()[key] = jobs.submit(
                lambda job: dream_store.made_once(stored, lambda: work(job)),
                label,
                key=request,
                abandon_after=jobs.WATCH_TIMEOUT,
                owner=common.student(),
            )
        except jobs.TooManyJobs as exc:
            common.too_many_jobs(exc)
            return
    st.rerun()  # redraw with the button disabled and the live panel polling


@st.fragment(run_every=HEARTBEAT_S)
def _heartbeat() -> None:
    """While this page is open (whichever tab), every job of this person is watched."""
    for job in _session_jobs().values():
        job.touch()


def _cancel(key: str) -> None:
    """This person stops watching; the run stops unless someone else asked for the very same dream."""
    job = _session_jobs().pop(key, None)
    if job is not None:
        job.cancel(common.student())


def _image(dream: dreams.Dream, caption: str) -> None:
    st.image(figures.picture(dream.image, 256), caption=caption, width="stretch")


def _curve(dream: dreams.Dream) -> None:
    history = dream.history
    if "style" in history:
        shown = {k: history[k] for k in ("style", "content")}
        st.plotly_chart(figures.curves(shown, "Losses<br>(relative errors, log scale)", log=True), width="stretch")
    else:
        st.plotly_chart(figures.curves(history, "Objective<br>(higher = stronger response)"), width="stretch")


def _panel(
    key: str,
    stem: str,
    result: Callable[[dreams.Dream], None] | None = None,
    before: tuple[np.ndarray, str] | None = None,
    note: str = "",
    aside: Callable[[], None] | None = None,
) -> None:
    """The job of this tab: queue place, progress with estimate and preview while it runs; result when done.

    before: (picture, caption) shown beside the dream (DeepDream's and style transfer's starting picture).
    note: a caption under the curve.
    aside: draws a column between the dream and its curve (feature visualisation: the unit's best patches).
    """
    job = _session_jobs().get(key)
    if job is None:
        return
    was_active = job.active

    @st.fragment(run_every=0.7 if was_active else None)
    def live() -> None:
        if job.state == "waiting":
            place = job.position()
            st.info(
                f"Waiting for a free slot: {job.slots.running} heavy job(s) are running on this server"
                + (f" and you are number {place} in the queue" if place else "")
                + ". Your dream starts by itself.",
                icon=":material/hourglass_top:",
            )
        elif job.state == "running":
            st.progress(job.fraction(), text=job.progress_text())
        if job.active:
            st.button("Cancel", key=f"cancel_{key}", on_click=_cancel, args=(key,), icon=":material/cancel:")
        dream = job.result if job.state == "finished" else job.preview
        if job.state == "failed":
            st.error(f"The dream failed: {job.error}", icon=":material/error:")
        elif job.state == "cancelled":
            st.info("Cancelled." + (" The last picture so far is shown below." if dream else ""))
        if dream is not None:
            if before is not None:
                start, left, right = st.columns([2, 2, 3])
                start.image(figures.picture(before[0], 256), caption=before[1], width="stretch")
            elif aside is not None:
                left, middle, right = st.columns([2, 2, 3])
                with middle:
                    aside()
            else:
                left, right = st.columns([2, 3])
            with left:
                if job.state == "finished":
                    _image(dream, f"{job.label} · {dream.steps} steps in {job.seconds:.1f} s")
                    st.download_button(
                        "Download PNG",
                        dream.png(),
                        f"{stem}.png",
                        "image/png",
                        key=f"png_{key}",
                        on_click="ignore",
                        icon=":material/download:",
                    )
                else:
                    _image(dream, f"{job.label} · after {dream.steps} steps")
            with right:
                _curve(dream)
                if note:
                    st.caption(note)
            if job.state == "finished" and result is not None:
                result(job.result)
        if was_active and not job.active:
            st.rerun()  # finished: redraw the whole page (buttons enabled, no more polling)

    live()


def _top5(model: LoadedModel, dream: dreams.Dream) -> None:
    probs = model.logits(dreams.to_input(model, dream.image))[0].softmax(0)
    values, indices = probs.topk(min(5, len(model.labels)))
    pairs = [(model.labels[i], float(v)) for v, i in zip(values, indices, strict=True)]
    st.plotly_chart(figures.top_k_bar(pairs, "What the network now predicts"), width="stretch")


PATCH_SIDE = 72  # screen pixels of one of a unit's best patches beside its dream


def _top_patches(model_key: str, model: LoadedModel, table: D.TopTable, unit: tuple[str, int]) -> None:
    """The dreamed unit's 9 best Fashion test-set patches, beside its dream (reused from What units look for)."""
    layer, channel = unit
    examples = cache.unit_result(
        ("examples", model_key, "fashion", layer, channel),
        lambda: D.unit_examples(model, table, lambda idx: D.fashion_inputs(model, idx), layer, channel, 9),
    )
    if not examples:
        return
    # One figure with gaps between the tiles (st.image's row of 72 px pictures left them touching).
    st.plotly_chart(
        figures.tile_mosaic(
            [D.to_rgb(model, ex.patch) for ex in examples],
            [f"#{rank}" for rank in range(1, len(examples) + 1)],
            cols=3,
            side=PATCH_SIDE,
        ),
        width="stretch",
        key="fv_patches",
    )
    st.caption(
        f"What real pictures do to it: the {len(examples)} test-set patches that excite this unit most "
        "(the part of each image the unit sees). The dream exaggerates what they share."
    )


def _units_link(model_key: str, unit: tuple[str, int]) -> None:
    """When the unit's best patches are not at hand: a button to the page that finds them (with progress)."""
    layer, channel = unit
    if st.button(
        f"Compare with the real pictures that excite {layer}, channel {channel} most",
        icon=":material/image_search:",
        help="Opens What units look for on this unit (searching its data set takes a while the first time).",
        key="fv_units_link",
    ):
        st.session_state[common.UNIT_LINK] = (model_key, layer, channel)
        st.switch_page("pages/units.py")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")


# ---- page ------------------------------------------------------------------------------

model_key, model = common.current_model()
st.title("Dreams: pictures the network makes")
st.caption(
    "Turn the network around: instead of showing it a picture and reading its answer, change a picture until "
    "the network answers the way we ask. Runs take seconds to a minute; they queue fairly with everyone else's, "
    "show their progress, and can be cancelled. The same settings and seed give the same picture."
)
if not model.trained:
    st.warning(
        "This network is **untrained** (random weights), so its dreams look noise-like: there is no learned "
        "pattern to bring out. Every method still runs, which is worth seeing too.",
        icon=":material/blur_on:",
    )
busy = _busy()
if busy:
    st.caption(
        "One dream at a time per person: the buttons come back when your current one ends. Stay on this page "
        f"while it runs: a dream nobody watches is stopped after {jobs.WATCH_TIMEOUT:.0f} s, to free the server "
        "for others."
    )
    _heartbeat()
handoff = st.session_state.pop(common.DREAM_UNIT_KEY, None)
if handoff and handoff[0] == model_key:  # from Activations or What units look for: open on that unit
    st.session_state["dream_tab"] = "Feature visualisation"
    st.session_state[f"fv_layer_{model_key}"] = handoff[1]
    st.session_state[f"fv_channel_{model_key}_{handoff[1]}"] = handoff[2]
tabs = st.tabs(
    ["Feature visualisation", "Class model", "DeepDream", "Style transfer"], key="dream_tab", on_change="rerun"
)
names = [row.name for row in model.layers]

with tabs[0]:
    if tabs[0].open:
        st.markdown(EXPLAIN["features"])
        slot = st.container()  # the progress and the dream, above the form: in view when Dream is pressed
        with st.form(f"fv_form_{model_key}"):
            # the layer's name gets a wide box (in a quarter of a 1024 px column it read "stage6.block")
            c1, c2 = st.columns([3, 1])
            c3, c4, c5 = st.columns(3)
            layer = c1.selectbox(
                "Layer",
                names,
                index=names.index(dreams.default_dream_layer(model)),
                key=f"fv_layer_{model_key}",
                help="Any layer; the last one's channels are the classes (see the Class model tab).",
            )
            units = model.layer(layer).out_shape[0]
            channel = c2.number_input(
                "Channel", 0, units - 1, 0, key=f"fv_channel_{model_key}_{layer}", help=f"0 … {units - 1}"
            )
            if model.input_size > 64:
                size = c3.select_slider(
                    "Size (px)",
                    [64, 96, 128, 160, 192, 224],
                    dreams.default_size(model),
                    key="fv_size",
                    help="128 px is four times quicker than 224 px.",
                )
            else:
                size = model.input_size
                c3.caption(f"Size: {size} px, the network's own input size, grey like its training pictures.")
            steps = c4.select_slider("Steps", [32, 64, 128, 256, 512], dreams.default_steps(model), key="fv_steps")
            seed = c5.number_input("Seed", 0, 9999, 0, key="fv_seed")
            submitted = st.form_submit_button("Dream", type="primary", disabled=busy, icon=":material/auto_awesome:")
        if submitted and not busy:
            label = f"{layer}, channel {channel}"
            st.session_state[f"fv_unit_{model_key}"] = (layer, int(channel))
            _start(
                f"features:{model_key}",
                label,
                lambda job: dreams.visualise(
                    model, layer, int(channel), int(size), int(steps), int(seed), job.report, preview=job.show
                ),
                ("features", model_key, layer, int(channel), int(size), int(steps), int(seed)),
                _stored(
                    "features", layer=layer, channel=int(channel), size=int(size), steps=int(steps), seed=int(seed)
                ),
            )
        # The dreamed unit's best dataset patches come free only when its table is in memory or on disk
        # (checked once per page run, not in the live panel: the disk check hashes the weights); never
        # computed here without asking: otherwise a button leads to the page that computes it.
        dreamed = st.session_state.get(f"fv_unit_{model_key}")
        if dreamed and f"features:{model_key}" not in _session_jobs():
            dreamed = None
        table = cache.ready_fashion_unit_table(model_key) if dreamed else None
        if table is not None and dreamed[0] not in table.layers:
            dreamed = None  # flatten and dropout have no table rows (a copy of the layer before)
        with slot:
            _panel(
                f"features:{model_key}",
                f"{model.name}_{layer}_channel{channel}",
                aside=(lambda: _top_patches(model_key, model, table, dreamed))
                if table is not None and dreamed
                else None,
            )
        if dreamed and table is None and dreamed[0] in D.unit_layers(model):
            _units_link(model_key, dreamed)

with tabs[1]:
    if tabs[1].open:
        st.markdown(EXPLAIN["class"])
        slot = st.container()  # progress and result above the form, in view when Dream is pressed
        with st.form(f"class_form_{model_key}"):
            c1, c2, c3 = st.columns([3, 1, 1])
            target = c1.selectbox(
                "Class", range(len(model.labels)), format_func=model.labels.__getitem__, key=f"cm_class_{model_key}"
            )
            steps = c2.select_slider("Steps", [32, 64, 128, 256, 512], dreams.default_steps(model), key="cm_steps")
            seed = c3.number_input("Seed", 0, 9999, 0, key="cm_seed")
            submitted = st.form_submit_button("Dream", type="primary", disabled=busy, icon=":material/auto_awesome:")
        if submitted and not busy:
            _start(
                f"class:{model_key}",
                f"class model: {model.labels[target]}",
                lambda job: dreams.class_model(model, int(target), int(steps), int(seed), job.report, preview=job.show),
                ("class", model_key, int(target), int(steps), int(seed)),
                _stored("class", target=int(target), steps=int(steps), seed=int(seed)),
            )
        with slot:
            _panel(f"class:{model_key}", f"{model.name}_class_{_slug(model.labels[target])}", lambda d: _top5(model, d))

with tabs[2]:
    if tabs[2].open:
        st.markdown(EXPLAIN["deepdream"])
        sel = common.selection(warn=False)  # the model's notices are at the top already
        # VGG-16's own pre-processing crops the photo; the Fashion CNN gets the converted 28x28 picture
        source = common.model_input_rgb(sel) if model.channels == 1 else sel.image
        spatial = dreams.spatial_layers(model)
        slot = st.container()  # progress and result above the form, in view when Dream is pressed
        with st.form(f"dd_form_{model_key}"):
            c1, c4 = st.columns([3, 1])  # a wide box for the layer's name
            c2, c3 = st.columns(2)
            layer = c1.selectbox(
                "Layer",
                spatial,
                index=spatial.index(dreams.default_dream_layer(model)),
                key=f"dd_layer_{model_key}",
                help="Early layers add strokes and textures; deeper layers add parts of objects.",
            )
            octaves = c2.slider("Octaves", 1, 5, 4, key="dd_octaves", help="Sizes, each 1.3 times the last.")
            steps = c3.slider("Strength (steps per octave)", 1, 30, 10, key="dd_steps")
            seed = c4.number_input("Seed", 0, 9999, 0, key="dd_seed")
            submitted = st.form_submit_button("Dream", type="primary", disabled=busy, icon=":material/auto_awesome:")
        if submitted and not busy:
            _start(
                f"deepdream:{model_key}",
                f"DeepDream at {layer}",
                lambda job: dreams.deep_dream(
                    model, source, layer, int(octaves), int(steps), int(seed), job.report, preview=job.show
                ),
                ("deepdream", model_key, sel.input_key, layer, int(octaves), int(steps), int(seed)),
                _stored(
                    "deepdream",
                    start=sel.input_key,
                    layer=layer,
                    octaves=int(octaves),
                    steps=int(steps),
                    seed=int(seed),
                ),
            )
        start = dreams.start_picture(model, source)
        if f"deepdream:{model_key}" not in _session_jobs():
            st.image(figures.picture(start, 256), "your picture, as the network sees it", width=260)
        with slot:
            _panel(
                f"deepdream:{model_key}",
                f"{model.name}_deepdream_{layer}",
                before=(start, "your picture, as the network sees it"),
                note="The objective drops at each new octave: the picture has just been enlarged, and the new, "
                "finer details have not been amplified yet.",
            )

with tabs[3]:
    if tabs[3].open:
        st.markdown(EXPLAIN["style"])
        reason = dreams.style_unavailable(model)
        if reason:
            st.info(f"Not offered for this network. {reason} Choose VGG-16 in the sidebar.", icon=":material/info:")
        else:
            sel = common.selection(warn=False)  # the model's notices are at the top already
            styles = dreams.bundled_styles()
            layers = dreams.default_style_layers(model)
            spatial = dreams.spatial_layers(model)
            c1, c2 = st.columns([1, 2])
            choice = c1.radio(
                "Style picture",
                [*styles, "upload"],
                format_func=lambda k: styles[k][0] if k in styles else "Upload your own",
                key="st_style",
            )
            style_image, style_id = None, choice
            if choice in styles:
                style_image = styles[choice][1]()
            else:
                upload = c1.file_uploader("Style picture", type=["png", "jpg", "jpeg", "webp"], key="st_upload")
                if upload is not None:
                    try:
                        style_image, style_id = load_image(upload.getvalue()), image_key(upload.getvalue())
                    except LensError as exc:
                        common.show_lens_error(exc)
            if style_image is not None:
                c2.image(style_image, caption="style", width=200)
            slot = st.container()  # progress and result above the form, in view when Dream is pressed
            with st.form(f"st_form_{model_key}"):
                f1, f2, f3 = st.columns(3)
                style_weight = f1.select_slider(
                    "Style weight", [0.0, 1.0, 3.0, 10.0, 30.0, 100.0], 10.0, key="st_style_weight"
                )
                content_weight = f1.select_slider("Content weight", [0.0, 0.3, 1.0, 3.0, 10.0], 1.0, key="st_cw")
                style_layers = f2.multiselect(
                    "Layers that carry style", spatial, list(layers.style), key=f"st_layers_{model_key}"
                )
                content_layer = f2.selectbox(
                    "Layer that carries content", spatial, spatial.index(layers.content), key=f"st_content_{model_key}"
                )
                size = f3.select_slider("Size (px)", [128, 192, 256], 192, key="st_size")
                steps = f3.select_slider("Steps", [20, 40, 80, 160], 80, key="st_steps")
                submitted = st.form_submit_button(
                    "Paint", type="primary", disabled=busy or style_image is None, icon=":material/palette:"
                )
            if submitted and not busy and style_image is not None:
                if not style_layers:
                    st.error("Choose at least one layer to carry the style.", icon=":material/error:")
                else:
                    chosen = dreams.StyleLayers(content_layer, tuple(style_layers))
                    content = sel.image
                    _start(
                        f"style:{model_key}",
                        "style transfer",
                        lambda job: dreams.style_transfer(
                            model,
                            content,
                            style_image,
                            int(size),
                            int(steps),
                            float(style_weight),
                            float(content_weight),
                            progress=job.report,
                            layers=chosen,
                            preview=job.show,
                        ),
                        (
                            "style",
                            model_key,
                            sel.input_key,
                            style_id,
                            chosen,
                            size,
                            steps,
                            style_weight,
                            content_weight,
                        ),
                        _stored(
                            "style",
                            content=sel.image_key,
                            style=style_id,
                            layers=[chosen.content, *chosen.style],
                            size=int(size),
                            steps=int(steps),
                            style_weight=float(style_weight),
                            content_weight=float(content_weight),
                        ),
                    )
            with slot:
                _panel(f"style:{model_key}", f"{model.name}_style_transfer")
