"""FeatInv: what image does a spatial feature map stand for? Conditional diffusion inversion.

`model` builds the ControlNet-conditioned diffusion model, `train` fits it to stored features,
`sample` draws reconstructions, and `evaluate` scores them (see METHODS.md, FeatInv).
"""
