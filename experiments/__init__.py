"""The project's experiments, beside the library (as detectron2 keeps projects/): the
Fashion-MNIST main job, the model and recipe comparisons on it, and the Fashion-MNIST scenes
segmentation demo with its data builders. They use the library; the library never imports
them."""
