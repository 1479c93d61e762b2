from featlab.provenance import git_state


# The study's tidy metrics table, joined from every stage's metrics files.
rule aggregate:
    input:
        study.metrics_files(),
    output:
        reported(study.table(), "metrics", "Tables"),
    log:
        study.log(study.table()),
    benchmark:
        study.benchmark(study.table())
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        study=config["study"],
        code=study.code("aggregate"),
    script:
        "../workflow_scripts/aggregate.py"


# Test cosine of mapped vs manipulated features by layer, manipulation and mapping.
rule plot_cosine:
    input:
        rules.aggregate.output,
    output:
        reported(study.figure("cosine_by_layer"), "cosine_by_layer", "FeatMap"),
    log:
        study.log(study.figure("cosine_by_layer")),
    benchmark:
        study.benchmark(study.figure("cosine_by_layer"))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=study.settings("plots"),
        code=study.code("plot_cosine"),
    script:
        "../workflow_scripts/plot_cosine.py"


# FeatMap: each mapping against the best, bias share and effective rank, rank-k curves.
rule plot_featmap:
    input:
        rules.aggregate.output,
    output:
        relative=reported(study.figure("relative_cosine"), "relative_cosine", "FeatMap"),
        structure=reported(study.figure("linear_structure"), "linear_structure", "FeatMap"),
        ranks=reported(study.figure("rank_curves"), "rank_curves", "FeatMap"),
    log:
        study.log(study.figure("featmap")),
    benchmark:
        study.benchmark(study.figure("featmap"))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=study.settings("plots"),
        code=study.code("plot_featmap"),
    script:
        "../workflow_scripts/plot_featmap.py"


# Every figure of the study, drawn from the stored tables only.
rule figures:
    input:
        study.figures(),


# What produced the study: resolved config, featlab version and commit, package versions.
rule provenance:
    input:
        rules.aggregate.output,
        rules.figures.input,
        features=[study.features(backbone, "original") for backbone in study.backbones],
    output:
        study.provenance(),
    log:
        study.log(study.provenance()),
    benchmark:
        study.benchmark(study.provenance())
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
        config=study.tracked_config(),
        images=study.manifest,
        git=git_state(workflow.basedir),
        backbones=study.backbones,
        code=study.code("provenance"),
    script:
        "../workflow_scripts/provenance.py"
