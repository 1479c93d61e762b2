"""Morph one test image toward a target class with every lens method, variant and budget."""

import sys

from featlab.data.images import ImageStore
from featlab.io import write_json
from featlab.lens import LensSettings, load_case, load_classifier, morph_case

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

backbone, name = snakemake.wildcards.backbone, snakemake.wildcards.case
settings = LensSettings(**snakemake.params.settings, threads=snakemake.threads)
classifiers = {
    other: load_classifier(spec, snakemake.params.weights[other], snakemake.params.input_size)
    for other, spec in snakemake.params.backbones.items()
}
driver = classifiers.pop(backbone)  # the others are read for transfer
case = load_case(ImageStore(snakemake.input.images), snakemake.params.case)

result = morph_case(driver, classifiers, case.image, case.target, settings)
result.save(
    snakemake.output.frames,
    snakemake.output.morphs,
    {"backbone": backbone, "case": name, **case.info},
)
write_json(snakemake.output.metrics, result.metric_rows(backbone, name))
