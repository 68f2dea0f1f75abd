# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,slideshow,jupyter,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 00 · Start here: check your set-up, and a map of the course
#
# **Learning goals.** After this notebook you
# 1. know that your machine can run the whole course, offline;
# 2. know what each notebook teaches and how long it takes;
# 3. know how to use the sliders, and how to run the course in a classroom.
#
# **Run time:** about 10 to 20 seconds on a 2-core laptop CPU, offline.

# %% [markdown]
# ## Setup
# Every notebook starts with this cell: it seeds everything and pins TensorFlow to 2 threads,
# so a rerun prints the same numbers on any machine.

# %% tags=["nbval-ignore-output"]
import tlcourse

print(tlcourse.setup_course(seed=0, threads=2))

import numpy as np

from tlcourse import backbones, data, doctor

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Environment check
# The same checks as `python -m tlcourse doctor` in a terminal (which lists every package): Python
# and packages, the widgets extension, the pretrained weights and their checksum, the datasets
# against their manifest, CPU threads, GPU. Each problem comes with the command that fixes it.

# %% tags=["nbval-ignore-output"]
from IPython.display import Markdown

checks = doctor.run_checks()
Markdown(doctor.summary(checks))

# %%
broken = [c.name for c in checks if c.status == doctor.FAIL]
assert not broken, f"fix these before going on: {broken}"
print("no check failed")

# %% [markdown]
# **Offline status.** Nothing below uses the network. The default network and the datasets are
# on this disk (checked above); the one optional download, VGG16's weights for a cell of notebook
# 02, is listed as cached or not. Prepare a classroom without Wi-Fi with `python -m tlcourse prefetch`.
#
# **Do the widgets work?** Move the slider: the text should follow. If you see "Error
# displaying widget" instead, see *Troubleshooting* in the README (usually: restart JupyterLab,
# reload the page). Before you run it, a stored copy shows the text `HBox(...)` where the slider
# belongs, unless the notebook is trusted (`jupyter trust notebooks/*.ipynb`, see the README).

# %% tags=["nbval-ignore-output"]
import ipywidgets as w

slider = w.IntSlider(value=3, min=0, max=18, description="blocks")
echo = w.Label()
slider.observe(lambda change: setattr(echo, "value", f"you chose {change['new']} blocks"), names="value")
slider.value = 4
w.HBox([slider, echo])

# %%
assert echo.value == "you chose 4 blocks"   # the slider's callback ran in the kernel
print(echo.value)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The pretrained network and the data are in place

# %%
classifier = backbones.load_backbone("efficientnet_lite0", image_size=224, include_top=True)
from skimage import data as photos

preds = backbones.decode_predictions(classifier.predict(backbones.prepare_image(photos.coffee(), 224)[None],
                                                        verbose=0), top=1)
print(f"EfficientNet-Lite0, {classifier.count_params():,} weights; the coffee photo is: "
      f"{preds[0][0][1]} ({preds[0][0][2]:.2f})")
for name, description in data.list_datasets().items():
    print(f"dataset {name!r}: {description}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The course map
# **Which file to open:** each notebook is a pair, `NN_name.ipynb` (open this one in JupyterLab)
# and `NN_name.py`, the same notebook as plain Python text (the maintainers edit and review that
# one; jupytext keeps the two in step). You can ignore the `.py` files.
#
# | notebook | what you do | time on a 2-core CPU |
# |---|---|---|
# | `00_start_here` | this check | < 1 min |
# | `01_feature_extraction` | freeze a pretrained network, cache its features, train a head; BatchNorm; look inside with PCA | about 1-1.5 min |
# | `02_fine_tuning` | unfreeze the top blocks; the learning rate that wrecks, the BatchNorm switch, the silent no-recompile bug; depth × learning-rate map; **sliders** | about 1.5-2.5 min |
# | `03_comparison` | feature extraction vs fine tuning vs from scratch on clip art, Fashion-MNIST and spoken-word spectrograms, 4 sizes × 5 seeds: intervals over seeds and images, paired tests, Holm's correction, a claims table and a decision guide built from it, analysed from committed records plus a live slice | about 2-3 min |
# | `04_fine_tuning_further` | going further: a learning rate per block in plain Keras, the head first or not when the test pictures lose their colour (after Kumar et al., 2022), forgetting measured in function, gradual unfreezing, Grad-CAM and its sanity check | about 3-4 min |
#
# The story follows the article *Fine Tuning vs Feature Extraction in Transfer Learning*. Notebook
# 03 ends with a **claims table**: each claim of the article, the section that tests it, the
# verdict (agrees, disagrees, mixed, not shown) and the evidence with its 95 % interval. Where
# our measurements disagree with the article, the notebooks say so.
#
# ## 4. How to use the sliders (notebook 02)
# * **unfreeze**: how many blocks, counted from the top, will train. 0 trains only the classifier
#   (feature extraction, a few epochs more); the label shows the trainable weights as you move it.
# * **learning rate**: a log-scale slider; 1e-4 is a safe start, 1e-2 shows the collapse.
# * **epochs** and **Train**: each click is one seeded run from the same pretrained weights, so
#   the same settings always give the same curve. Shallow depths answer in seconds (the frozen
#   part is computed once and cached); deep ones take longer. The panel reports **validation**
#   accuracy: choose with it, then press **Check on test** once, for the setting you finally pick.
#
# ## 5. In a classroom
# * Before class, on the lecture machine: `python -m tlcourse doctor`, then run the notebooks
#   once (the caches make the second run faster).
# * Students get copies without the exercise solutions: `python tools/make_student_copies.py`
#   writes them to `student/`. The notebooks carry slide metadata: present them with the RISE
#   extension for JupyterLab. See `INSTRUCTORS.md` for timings, talking points, and the
#   questions learners ask.
# * Offline room: everything but notebook 02's optional VGG16 cell needs nothing; for that cell
#   run `python -m tlcourse prefetch --keras-home DIR` at home and copy the folder.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# **Exercise 1.** How many CPU threads does TensorFlow use in this course, and how many does your
# machine have? Where is that set?

# %% tags=["solution", "nbval-ignore-output"] jupyter={"source_hidden": true}
import os

import tensorflow as tf

print("TensorFlow threads:", tf.config.threading.get_intra_op_parallelism_threads(),
      "(set by tlcourse.setup_course(threads=2)); this machine has", os.cpu_count(), "cores")

# %% [markdown]
# **Exercise 2.** Where does the course keep its caches (converted weights, cached features)?
# How would you move them to another disk?

# %% tags=["solution", "nbval-ignore-output"] jupyter={"source_hidden": true}
print(tlcourse.cache_dir(), "- set the TLCOURSE_CACHE environment variable to move it")
