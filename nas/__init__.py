"""skipnas: DARTS search of full-scale U-Net skip connections for lesion segmentation."""

__version__ = "0.1.0"
