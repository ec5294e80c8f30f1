"""CNN Lens backend: a plain PyTorch/NumPy library behind the Streamlit pages."""
