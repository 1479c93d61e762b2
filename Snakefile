# featlab: the feature space of vision models, studied through the input space.
#
# Every output lives under results/{study}/ in one scheme:
#   images/{imageset}.zarr                                  original and manipulated images
#   models/{backbone}/model.safetensors                     backbones trained in the pipeline
#   features/{backbone}/{imageset}.zarr                     layer outputs and logits
#   mappings/{backbone}/{layer}/{manipulation}/{mapping}/   fitted maps and their metrics
#   lens/{backbone}/{case}/                                 lens morphs (frames, readings)
#   filters/{backbone}/{layer}/                             decoded neuron filters, fidelity
#   featinv/{backbone}/{layer}/                             FeatInv models (diffusers folders)
#   inversions/{backbone}/{layer}/{manipulation}/[{mapping}/]  reconstructions and their scores
#   edits/{backbone}/{layer}/{manipulation}/                magnified learned edits, read and inverted
#   tables/metrics.csv, figures/                            the aggregated study
#   provenance.json                                         config, code and package versions
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from featlab.schema import config_error

min_version("9.0")


# The embedded default study, unless a study's own config file is given (--configfile): a study
# config is complete, so none of the default's manipulations or backbones leak into it.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# A violation is reported as the key, the value and what is expected (featlab.schema).
try:
    validate(config, "schemas/config.schema.yaml")
except WorkflowError as error:
    raise WorkflowError(config_error(error)) from None


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/backbones.smk"
include: "rules/mapping.smk"
include: "rules/featmap.smk"
include: "rules/lens.smk"
include: "rules/filters.smk"
include: "rules/featinv.smk"
include: "rules/edits.smk"
include: "rules/aggregate.smk"


# A run killed with SIGKILL leaves its locks; rerunning the same command releases them once its
# process is gone (featlab.runs), instead of asking for `snakemake --unlock`.
stale = release_stale_locks()
if stale is not None:
    print(f"featlab: released the locks of run {stale}, which was killed", file=sys.stderr)


onstart:
    record_run()


onsuccess:
    forget_run()


onerror:
    forget_run()


# The whole study: the metrics table, its figures and their provenance.
rule all:
    default_target: True
    input:
        rules.aggregate.output,
        rules.figures.input,
        rules.provenance.output,
