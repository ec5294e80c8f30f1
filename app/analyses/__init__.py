"""What the pages show: each analysis a tested function of a network and an input, returning plain arrays."""
