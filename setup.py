from setuptools import find_packages, setup

setup(
    name="deepcache",
    version="0.1.0",
    description="Training-free diffusion U-Net acceleration by caching deep features (DeepCache) on current diffusers",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["deepcache", "deepcache.*"]),
    python_requires=">=3.10",
    install_requires=[
        # Install torch first (README): a bare `torch` on a machine without it pulls a multi-GB CUDA build.
        "torch>=2.1",
        "diffusers>=0.42.1",
        "transformers>=4.41",
        "safetensors>=0.4",
        "huggingface_hub>=0.23",
        "accelerate>=0.31",  # offloading and fast loading in diffusers
        "numpy",
        "Pillow",
        "torchmetrics>=1.4",  # PSNR, SSIM, Frechet distance and KID
        "matplotlib>=3.7",  # profile plots and result figures are part of what users look at
        "tqdm",  # progress bars on every long phase
        "pyyaml",  # CompVis configs (the LDM-4-G converter)
    ],
    # The embedded models' weights (safetensors) and configs.
    package_data={"deepcache": ["embedded/data/*.json", "embedded/data/*/*.json", "embedded/data/*/*.safetensors",
                                 "embedded/data/*/*/*.json", "embedded/data/*/*/*.safetensors", "embedded/data/*/*/*.txt"]},
    extras_require={
        "research": ["scikit-learn>=1.3"],  # the digits data set (reproduction, training)
        # Inception FID. torch-fidelity needs torchvision: install the one matching your torch first.
        "metrics": ["torch-fidelity>=0.3"],
        "test": ["pytest>=7", "peft>=0.15", "scikit-learn>=1.3"],  # peft: diffusers' LoRA loading
    },
    license="Apache-2.0",
)
