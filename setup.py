from setuptools import find_packages, setup

setup(
    name="streamscore",
    version="0.1.0",
    description="Event-driven, real-time AI on Apache Flink: fraud, recommendations and IoT anomaly jobs",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["streamscore", "streamscore.*", "jobs", "jobs.*", "udfs", "udfs.*",
                                    "features", "features.*", "training", "training.*", "bench", "bench.*"]),
    install_requires=[
        "apache-flink==2.2.1",  # keep in step with jvm/pom.xml (flink.version)
        "kafka-python>=2.2,<4",
        "crc32c>=2.3",  # C checksums for kafka-python (pure Python caps producing at ~6k events/s)
        "scikit-learn>=1.3",
        "joblib>=1.3",
        "pyarrow>=14,<21",  # PyFlink 2.2 bound
        "pandas>=2.0,<2.3",  # PyFlink 2.2 bound
        "numpy>=1.24",
        "matplotlib>=3.7",
        "tqdm>=4.60",
    ],
    extras_require={"dev": ["pytest>=7", "pytest-timeout>=2.1", "hypothesis>=6.80"]},
    entry_points={"console_scripts": ["streamscore=streamscore.cli:main"]},
)
