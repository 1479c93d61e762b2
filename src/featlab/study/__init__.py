"""The study's plan (featlab.study.plan.Study): the validated config turned into the path scheme,
the planned cells, the cross-key checks, each stage's settings and each rule's code hash."""

from featlab.study.paths import STAGES
from featlab.study.plan import Study, gpus
from featlab.study.settings import SETTINGS, settings_of

__all__ = ["SETTINGS", "STAGES", "Study", "gpus", "settings_of"]
