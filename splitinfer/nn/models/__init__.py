from .pointcloud import (ENCODER_SPECS, Classifier, PointCloudCodec, PointEncoder,
                         Reconstruction, chamfer_distance)

__all__ = ["ENCODER_SPECS", "Classifier", "PointCloudCodec", "PointEncoder", "Reconstruction",
           "chamfer_distance"]
