"""Networks and their inputs: the registry, layer tables, receptive fields, traced graphs, images, data sets."""
