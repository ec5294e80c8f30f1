"""CNN Lens backend: a plain PyTorch/NumPy library behind the Streamlit pages.

Five rooms, each importing only from the rooms listed before it (tests/test_structure.py
enforces it):
- `app.base`: typed errors, the project's paths, small numeric helpers;
- `app.serving`: what lets one server hold a class: the job queue, side-by-side passes,
  bounded caches, the on-disk store, progress, precision;
- `app.networks`: the networks and their inputs: the model registry, layer tables and
  receptive fields, traced graphs and their outputs, images, data sets, samples;
- `app.analyses`: what a page shows, each a function of a network and an input that
  returns plain arrays;
- `app.pictures`: every figure, from those plain arrays.
"""
