"""Conveyor: installs the project's packages (also what Beam workers get via --setup_file)."""
from setuptools import find_packages, setup

setup(
    name="conveyor",
    version="0.1.0",
    description="A TFX pipeline for the Chicago-taxi big-tipper model, from raw spans to a served model.",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["speedups", "models", "data", "schema", "pipeline", "pipeline.*", "metadata", "serving", "monitoring", "ct", "conveyor", "conveyor.*"]),  # noqa: E501 (tests/test_dockerfile.py reads this line)
    py_modules=["local_runner", "kubeflow_runner"],
    # Files the code reads at run time: the taxi feature contract, the curated schema and its
    # completeness floors, the Jinja2 templates of every page (pipeline/pages.py). A non-editable install (the Dockerfile's
    # `pip install .`) copies only these; tests/test_pages.py builds the wheel and looks.
    package_data={
        "schema": ["schema.pbtxt", "completeness.json"],
        "models": ["taxi.toml"],  # the taxi feature contract, the default one (models/features.py)
        "pipeline": ["templates/*.html.j2"],
        "conveyor": ["templates/*.html.j2"],
        "conveyor.local": ["templates/*.html.j2"],
        "monitoring": ["templates/*.html.j2"],
    },
    install_requires=["tfx[kfp]==1.21.0", "tensorboard"],
    entry_points={"console_scripts": ["conveyor=conveyor.cli:main"]},
)
