"""Live training: train a small Fashion-MNIST CNN and watch its curves move."""

from __future__ import annotations

import streamlit as st

from app.analyses import training
from app.analyses.training import OPTIMISERS, TrainConfig
from app.pictures import figures
from pages import common

MAX_RUNS = 8  # runs kept on the chart per session (each holds a small network)

st.title("Live training")
st.caption(
    "Train a fresh copy of a small Fashion-MNIST CNN right here and watch it learn. The training curves show the "
    "loss on the batches it is learning from; the test curves show images it never trains on, which is the honest "
    "measure. Runs stay on the charts, so change one setting at a time and compare. The shipped model is never changed."
)

runs: list[training.Run] = st.session_state.setdefault("training_runs", [])
busy = any(r.active for r in runs)

with st.form("train_form"):
    c1, c2, c3 = st.columns(3)
    optimiser = c1.selectbox(
        "Optimiser", OPTIMISERS, index=2, help="Plain SGD usually needs a learning rate near 0.1; Adam near 0.001."
    )
    lr = c1.select_slider("Learning rate", [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0], 0.001)
    batch_norm = c2.toggle("Batch normalisation", True, help="Normalise each conv layer's outputs per batch.")
    dropout = c2.toggle("Dropout", True, help="Randomly silence 30 % of the fully connected units while training.")
    epochs = c3.slider("Epochs", 1, 10, 2, help="How many times the network sees every training image.")
    size = c3.select_slider("Training images", [1000, 2000, 6000, 10000, 30000, 60000], 6000)
    submitted = st.form_submit_button("Train", type="primary", disabled=busy)
    default = TrainConfig()
    estimate = training.estimate_seconds(default)
    st.caption(
        f"On this server the defaults ({default.train_size:,} images × {default.epochs} epochs) now take about "
        f"{estimate:.0f} s, measured on its last run; time grows with images × epochs (60,000 × 10 is 50 times "
        "as long)."
        if estimate is not None
        else "Time grows with images × epochs: the defaults are a quick first run, 60,000 images × 10 epochs "
        "is 50 times as long. After a first run this note gives the time measured on this server."
    )

if submitted and not busy:
    config = TrainConfig(
        optimiser=optimiser, lr=lr, batch_norm=batch_norm, dropout=dropout, epochs=epochs, train_size=size
    )
    runs.append(training.start(config, owner=common.student()))
    del runs[:-MAX_RUNS]
    st.rerun()  # redraw with the form disabled and the live view polling


@st.fragment(run_every=1.0 if busy else None)
def live() -> None:
    """Redrawn every second while a run is active; a full rerun when the last one ends re-enables the form."""
    for i, run in enumerate(runs):
        if run.state == "waiting":
            slots = training.SLOTS
            place = slots.position(run)
            st.info(
                f"Run {i + 1} is waiting: all {slots.limit} slot(s) for heavy work on this server are busy"
                + (f" (place {place} in the queue)" if place else "")
                + ". It starts by itself as soon as one is free.",
                icon="⏳",
            )
        elif run.state == "running":
            st.progress(run.progress(), text=f"Run {i + 1}: {run.config.label()}")
        if run.active:
            st.button("Stop", key=f"stop_{id(run)}", on_click=run.stop, help="End this run after the current batch.")
        elif run.state == "failed":
            st.error(f"Run {i + 1} failed: {run.error}", icon="🚫")
        elif run.state == "diverged":
            st.warning(f"Run {i + 1} diverged: the loss is no longer a number. Try a smaller learning rate.")
    if not runs:
        st.info("No runs yet: choose settings and press Train.", icon=":material/touch_app:")
        return
    histories = [run.history for run in runs]
    c1, c2 = st.columns(2)
    c1.plotly_chart(
        figures.training_curves(histories, "loss", "Loss (cross-entropy)"), width="stretch", key="train_loss"
    )
    c2.plotly_chart(figures.training_curves(histories, "accuracy", "Accuracy"), width="stretch", key="train_accuracy")
    st.caption("Solid: training batches; dashed: 500 test images. One colour per run.")
    st.dataframe(
        [
            {
                "run": i + 1,
                "settings": run.config.label(),
                "state": run.state,
                "test accuracy": run.history[-1].test_accuracy if run.history else None,
                "seconds": round(run.seconds, 1) if run.seconds else None,
            }
            for i, run in enumerate(runs)
        ],
        hide_index=True,
        width="stretch",
    )
    if busy and not any(r.active for r in runs):
        st.rerun()  # the last run just ended: redraw the whole page (form enabled, no more polling)


live()

done = [(i, r) for i, r in enumerate(runs) if r.state in ("finished", "stopped") and r.history]
if done:
    st.subheader("Explore a trained network")
    st.markdown(
        "Pick a run to use instead of the shipped Fashion-MNIST CNN on the other pages for the rest of this session."
    )
    choice = st.selectbox("Run", [i for i, _ in done], format_func=lambda i: f"run {i + 1}: {runs[i].config.label()}")
    c1, c2 = st.columns(2)
    if c1.button("Use this network", key="use_session_model"):
        st.session_state[common.SESSION_MODEL] = training.as_loaded_model(runs[choice])
        st.success("The Fashion-MNIST pages now show this network. Choose the Fashion-MNIST CNN in the sidebar.")
    if st.session_state.get(common.SESSION_MODEL) is not None and c2.button("Back to the shipped network"):
        st.session_state[common.SESSION_MODEL] = None
