from .pointcloud import (ENCODER_SPECS, Classifier, PointCloudCodec, PointEncoder,
                         Reconstruction, chamfer_distance)

from .image import DOWNSAMPLING, FactorizedPrior

__all__ = ["DOWNSAMPLING", "FactorizedPrior", "ENCODER_SPECS", "Classifier", "PointCloudCodec", "PointEncoder", "Reconstruction",
           "chamfer_distance"]
