"""The local server on a model pushed by a real (tiny) pipeline run."""

import glob
import io
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
import grpc

from schema.settings import ServeSettings
from serving import client as client_lib
from serving import server
from serving.export import signatures


@pytest.fixture(scope="module")
def pushed(synthetic_pipeline):
  handle = server.start_server(synthetic_pipeline["serving"],
                               ServeSettings(port=0, poll_seconds=0.5))
  yield dict(synthetic_pipeline, address=handle.address)
  handle.stop()


def _test_images(data, k=6):
  paths = sorted(glob.glob(os.path.join(data, "test", "*", "*.jpeg")))
  # Both classes: the first and last k/2 (NORMAL sorts before PNEUMONIA).
  chosen = paths[:k // 2] + paths[-k // 2:]
  images = []
  for path in chosen:
    with open(path, "rb") as f:
      images.append(f.read())
  return images


def test_pushed_model_is_available_and_predicts_like_the_saved_model(pushed):
  client = client_lib.Client(pushed["address"], timeout=60)
  version = int(os.path.basename(pushed["pushed_model"]))
  assert client.status(pushed["model_name"]) == {version: "AVAILABLE"}
  images = _test_images(pushed["data"])
  out = client.predict(pushed["model_name"], images)
  direct = tf.saved_model.load(pushed["pushed_model"]).signatures[
      signatures.SERVING_DEFAULT](images=tf.constant(images))
  np.testing.assert_allclose(out["probabilities"],
                             direct["probabilities"].numpy(), atol=1e-6)
  assert list(out["class_id"]) == list(direct["class_id"].numpy())


def test_tf_example_signature_over_grpc(pushed):
  images = _test_images(pushed["data"], k=2)
  request = predict_pb2.PredictRequest()
  request.model_spec.name = pushed["model_name"]
  request.model_spec.signature_name = signatures.TF_EXAMPLE
  examples = [tf.train.Example(features=tf.train.Features(feature={
      "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[i]))
  })).SerializeToString() for i in images]
  request.inputs["examples"].CopyFrom(
      tf.make_tensor_proto(examples, dtype=tf.string, shape=[2]))
  stub = prediction_service_pb2_grpc.PredictionServiceStub(
      grpc.insecure_channel(pushed["address"]))
  outputs = tf.make_ndarray(stub.Predict(request, timeout=60).outputs[
      "outputs"])
  probabilities = client_lib.Client(pushed["address"], timeout=60).predict(
      pushed["model_name"], images)["probabilities"]
  np.testing.assert_allclose(outputs[:, 0], probabilities[:, 1], atol=1e-6)


def test_gradcam_over_grpc_explains_the_predicted_class(pushed):
  client = client_lib.Client(pushed["address"], timeout=60)
  images = _test_images(pushed["data"])
  predicted = client.predict(pushed["model_name"], images)["class_id"]
  # No class_index sent: the server takes the SignatureDef's default.
  cam = client.gradcam(pushed["model_name"], images)
  assert list(cam["class_id"]) == list(predicted)
  assert cam["heatmap"].shape[0] == len(images)
  assert 0.0 <= cam["heatmap"].min() and cam["heatmap"].max() <= 1.0
  for png in cam["overlay_png"]:
    with Image.open(io.BytesIO(png)) as overlay:
      overlay.load()
      assert overlay.format == "PNG"
      assert overlay.size == cam["heatmap"].shape[1:][::-1]
  # Explaining the other class gives another map.
  other = client.gradcam(pushed["model_name"], images,
                         class_index=[1 - c for c in predicted])
  assert list(other["class_id"]) == [1 - c for c in predicted]
  assert not np.allclose(other["heatmap"], cam["heatmap"])
