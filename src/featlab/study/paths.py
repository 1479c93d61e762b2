"""The path scheme of a study: every output under results/{study}/{stage}/, one function per stage
folder, and each job's log and benchmark named after what it makes (README: the path scheme)."""

# The stage folders under results/{study}/.
STAGES = (
    "images",
    "models",
    "features",
    "mappings",
    "lens",
    "filters",
    "featinv",
    "inversions",
    "optimisations",
    "edits",
    "tables",
    "figures",
)


class StudyPaths:
    """The paths of a study's outputs; `config["study"]` names their folder."""

    config: dict

    @property
    def root(self) -> str:
        return f"results/{self.config['study']}"

    def path(self, stage: str, *parts: str) -> str:
        """results/{study}/{stage}/{parts...}: every output's path."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; the stages are {STAGES}")
        return "/".join((self.root, stage, *parts))

    def log(self, made: str) -> str:
        """The log of the job that makes `made` (an output, or the folder a job writes into):
        results/{study}/logs/ + its path under results/{study}/, suffixes dropped."""
        return f"{self.root}/logs/{self._job_name(made)}.log"

    def benchmark(self, made: str) -> str:
        """The benchmark file of the job that makes `made` (see `log`)."""
        return f"{self.root}/benchmarks/{self._job_name(made)}.tsv"

    def _job_name(self, made: str) -> str:
        relative = made.removeprefix(f"{self.root}/")
        if relative == made:
            raise ValueError(f"{made} is not under {self.root}/")
        # images/{m}.shards/{shard}.zarr -> images/{m}/{shard}; wildcards hold no dots here
        return "/".join(part.split(".")[0] for part in relative.split("/"))

    def images(self, imageset: str) -> str:
        return self.path("images", f"{imageset}.zarr")

    def scenes(self) -> str:
        """The shapes world's scene parameters, which counterfactual manipulations re-render."""
        return self.path("images", "original.scenes.json")

    def edit_shard(self, manipulation: str, shard: str) -> str:
        """One edit job's image store; the manipulation's image store gathers them."""
        return self.path("images", f"{manipulation}.shards", f"{shard}.zarr")

    def model(self, backbone: str, name: str = "") -> str:
        """A backbone's folder of pipeline-made weights, or a file in it."""
        return self.path("models", backbone, *filter(None, [name]))

    def features(self, backbone: str, imageset: str, suffix: str = ".zarr") -> str:
        """A backbone's feature store of an image set (or its .metrics.json)."""
        return self.path("features", backbone, f"{imageset}{suffix}")

    def feature_shard(self, backbone: str, imageset: str, shard: str) -> str:
        """One extraction shard's store; the set's store gathers them (featlab.store)."""
        return self.path("features", backbone, f"{imageset}.shards", f"{shard}.zarr")

    def mapping(self, backbone: str, layer: str, *cell: str) -> str:
        """A layer's FeatMap folder, or a (manipulation, mapping) cell's folder in it."""
        return self.path("mappings", backbone, layer, *cell)

    def lens(self, backbone: str, case: str, name: str = "") -> str:
        """A driver's folder of one case, or a file in it."""
        return self.path("lens", backbone, case, *filter(None, [name]))

    def filters(self, backbone: str, layer: str) -> str:
        return self.path("filters", backbone, layer)

    def featinv(self, backbone: str, layer: str) -> str:
        return self.path("featinv", backbone, layer)

    def inversion(self, backbone: str, layer: str, manipulation: str, *mapping: str) -> str:
        """A cell's references folder, or one mapping's inversions folder inside it."""
        return self.path("inversions", backbone, layer, manipulation, *mapping)

    def optimisation(self, backbone: str, layer: str, manipulation: str, *mapping: str) -> str:
        """The optimiser's references folder of a cell, or one mapping's folder inside it."""
        return self.path("optimisations", backbone, layer, manipulation, *mapping)

    def edit(self, backbone: str, layer: str, manipulation: str, name: str = "") -> str:
        """A cell's folder of magnified edits, or a file in it."""
        return self.path("edits", backbone, layer, manipulation, *filter(None, [name]))

    def table(self) -> str:
        return self.path("tables", "metrics.csv")

    def figure(self, *parts: str, suffix: str = ".png") -> str:
        return self.path("figures", *parts[:-1], f"{parts[-1]}{suffix}")

    def provenance(self) -> str:
        return f"{self.root}/provenance.json"
