# Steerable lens: morphs of test images toward a target class, driven by a classifier's gradient
# in a complex steerable pyramid (and in pixel and Fourier comparators), and their figures.
check_lens_config()


wildcard_constraints:
    case="|".join(map(re.escape, LENS_CASES)) or "(?!)",


# Every morph of one case (a test image and a target class) driven by one backbone's gradient.
rule lens:
    input:
        images=image_store("original"),
        weights=[path for path in lens_weight_files().values() if path],
    output:
        frames=f"{RESULTS}/lens/{{backbone}}/{{case}}/frames.safetensors",
        morphs=f"{RESULTS}/lens/{{backbone}}/{{case}}/morphs.json",
        metrics=f"{RESULTS}/lens/{{backbone}}/{{case}}/metrics.json",
    log:
        f"{RESULTS}/logs/lens/{{backbone}}/{{case}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/lens/{{backbone}}/{{case}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        case=lens_case,
        settings=lens_settings(),
        backbones=lens_backbones(),
        weights=lens_weight_files(),
        input_size=config["extraction"]["input_size"],
        code=code_hash("lens", "backbones", "data", "tables", "io", "_compat"),
    script:
        "../workflow_scripts/lens.py"


# A frame strip (PNG) and an animated GIF of every case of one driving backbone.
rule lens_strips:
    input:
        frames=lens_case_files("frames.safetensors"),
        morphs=lens_case_files("morphs.json"),
    output:
        strips=report(
            expand(f"{RESULTS}/figures/lens/{{{{backbone}}}}/{{case}}.png", case=LENS_CASES),
            caption="../report/lens_strip.rst",
            category="Steerable lens",
            subcategory="{backbone}",
        ),
        gifs=report(
            expand(f"{RESULTS}/figures/lens/{{{{backbone}}}}/{{case}}.gif", case=LENS_CASES),
            caption="../report/lens_strip.rst",
            category="Steerable lens",
            subcategory="{backbone}",
        ),
    log:
        f"{RESULTS}/logs/figures/lens/{{backbone}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/lens/{{backbone}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_hash("plots", "io"),
    script:
        "../workflow_scripts/lens_strips.py"


# Target probability, transfer and warp share by method, variant and budget (median over cases).
rule plot_lens:
    input:
        f"{RESULTS}/tables/metrics.csv",
    output:
        report(
            f"{RESULTS}/figures/lens_summary.png",
            caption="../report/lens_summary.rst",
            category="Steerable lens",
        ),
    log:
        f"{RESULTS}/logs/figures/lens_summary.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/lens_summary.tsv"
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
        "../workflow_scripts/plot_lens.py"
