from featlab.provenance import git_state


# The study's tidy metrics table, joined from every stage's metrics files.
rule aggregate:
    input:
        extraction_metrics(),
        mapping_metrics(),
        filter_metrics(),
        lens_metrics(),
        inversion_metrics(),
        edit_metrics(),
    output:
        report(
            f"{RESULTS}/tables/metrics.csv",
            caption="../report/metrics.rst",
            category="Tables",
        ),
    log:
        f"{RESULTS}/logs/tables/metrics.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/metrics.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        study=config["study"],
        code=code_hash("tables", "io"),
    script:
        "../workflow_scripts/aggregate.py"


# Test cosine of mapped vs manipulated features by layer, manipulation and mapping.
rule plot_cosine:
    input:
        rules.aggregate.output,
    output:
        report(
            f"{RESULTS}/figures/cosine_by_layer.png",
            caption="../report/cosine_by_layer.rst",
            category="FeatMap",
        ),
    log:
        f"{RESULTS}/logs/figures/cosine_by_layer.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/cosine_by_layer.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=config["plots"],
        code=code_hash("plots", "tables"),
    script:
        "../workflow_scripts/plot_cosine.py"


# FeatMap: each mapping against the best, bias share and effective rank, rank-k curves.
rule plot_featmap:
    input:
        rules.aggregate.output,
    output:
        relative=report(
            f"{RESULTS}/figures/relative_cosine.png",
            caption="../report/relative_cosine.rst",
            category="FeatMap",
        ),
        structure=report(
            f"{RESULTS}/figures/linear_structure.png",
            caption="../report/linear_structure.rst",
            category="FeatMap",
        ),
        ranks=report(
            f"{RESULTS}/figures/rank_curves.png",
            caption="../report/rank_curves.rst",
            category="FeatMap",
        ),
    log:
        f"{RESULTS}/logs/figures/featmap.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/featmap.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=config["plots"],
        code=code_hash("plots", "tables"),
    script:
        "../workflow_scripts/plot_featmap.py"


# Every figure of the study, drawn from the stored tables only.
rule figures:
    input:
        rules.plot_cosine.output,
        featmap_figures(),
        filter_figures(),
        lens_figures(),
        inversion_figures(),
        edit_figures(),


# What produced the study: resolved config, featlab version and commit, package versions.
rule provenance:
    input:
        rules.aggregate.output,
        rules.figures.input,
        features=[features_of(backbone, "original") for backbone in BACKBONES],
    output:
        f"{RESULTS}/provenance.json",
    log:
        f"{RESULTS}/logs/provenance.log",
    benchmark:
        f"{RESULTS}/benchmarks/provenance.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    # Written last (it reads the table and figures), so it reruns whenever they do. The config and
    # the checkout's commit and dirty flag are params: a config change, a new commit or a first edit
    # rewrite it (one cheap job). The time written and the package versions are read when the job
    # runs, in the job's environment: as params the time would rerun it at every invocation, and
    # the versions would be those of Snakemake's environment, not the job's.
    params:
        config=tracked_config(),
        images=IMAGE_MANIFEST,
        git=git_state(workflow.basedir),
        backbones=BACKBONES,
        code=code_hash("provenance", "store", "io"),
    script:
        "../workflow_scripts/provenance.py"
