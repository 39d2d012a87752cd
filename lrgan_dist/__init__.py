"""lrgan-dist: LowRankGAN (Zhu et al., NeurIPS 2021) as a distributed batch analysis."""
__version__ = "0.1.0"
