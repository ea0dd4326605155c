"""Figures and a summary table of the package's evidence, rebuilt from training runs.

`python -m supcon_tf.report --model_dirs=GLOB[,GLOB...] --output_dir=docs/figures`
(`cli.py`): `data.py` reads the runs (results.json, config.json, eval_results.json,
TensorBoard event files, embeddings), `plots.py` draws the PNGs (matplotlib, Agg),
`summary.py` computes the table.
"""
