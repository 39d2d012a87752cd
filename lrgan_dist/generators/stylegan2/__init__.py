"""StyleGAN2 (Karras et al., CVPR 2020): the network (``net``) and its generator adapter (``adapter``)."""
