"""Every Plotly figure and picture the pages draw, made from the analyses' plain arrays."""
