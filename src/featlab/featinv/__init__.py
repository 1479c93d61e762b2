"""FeatInv: what image does a spatial feature map stand for? Conditional diffusion inversion.

`model` builds the ControlNet-conditioned diffusion model, `train` fits it to stored features,
`sample` draws reconstructions, `optimise` is the classic optimisation inverter beside it, and
`evaluate` scores both (see METHODS.md, FeatInv).
"""
