"""sertk: speech emotion recognition toolkit in the Kaldi/ESPnet recipe style."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
exec((here / "sertk" / "version.py").read_text(), version)

setup(
    name="sertk",
    version=version["__version__"],
    description="Speech emotion recognition toolkit with Kaldi/ESPnet-style recipes",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["sertk", "sertk.*"]),
    package_data={"sertk": ["pretrained/*.zip", "pretrained/*.md"]},
    install_requires=[
        "torch==2.11.0",
        "torchaudio==2.11.0",
        "typer>=0.12",
        "kaldiio>=2.18",
        "soundfile>=0.12",
        "numpy>=1.24",
        "tqdm>=4.60",
        "pyyaml>=6.0",
        "safetensors>=0.4",
        "matplotlib>=3.7",
        "sentencepiece>=0.2",  # sertk tokenizer (transcripts -> units for CTC / text models)
        "av>=12",  # PyAV (bundled FFmpeg): audio of video-clip corpora (egs/meld)
        "scikit-learn>=1.3",  # SVR late fusion (sertk/fusion_svr.py, bin/svr_fusion.py)
        "onnx>=1.17",  # sertk export --format onnx
        "onnxruntime>=1.20",  # sertk infer --backend onnxruntime
    ],
    extras_require={
        "opensmile": ["opensmile>=2.5"],
        # kaldi-native-fbank and transformers are independent references for the tests
        "test": ["pytest>=7", "scikit-learn>=1.3", "ruff>=0.5", "opensmile>=2.5",
                 "kaldi-native-fbank>=1.20", "transformers>=4.40", "tensorboard>=2.14"],
    },
    entry_points={"console_scripts": ["sertk=sertk.cli.main:main"]},
)
