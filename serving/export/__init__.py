"""The exported model's interface: its signatures, Grad-CAM, and the pixel
encoding the Transform graph and the signatures share.

The Trainer exports with it and the report explains with it; the serving
runtime (serving/server, client.py, tf_serving_config.py) needs none of it,
since it serves any SavedModel by its SignatureDefs.
"""
