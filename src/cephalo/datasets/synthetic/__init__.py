"""The built-in synthetic dataset: procedurally drawn lateral cephalograms, so that cephalo runs with no download.

Each image is a grey, X-ray-like lateral skull facing right (like ISBI 2015 and Aariz cephalograms): the cranial
vault as a thick bright bone ring, the cranial base (planum, clivus, petrous bone), the sella turcica as a small
cup, orbit, nasal bone, maxilla with the hard palate, the pterygomaxillary fissure, the mandible (condyle, ramus,
angle, body, symphysis) as a bright cortical band, incisors and posterior teeth, cervical vertebrae, the hyoid,
the pharyngeal airway, and the darker soft-tissue profile (forehead, nose, lips, chin, neck) over a dark
background; then blur, a smooth intensity field, noise and a random contrast / brightness / gamma.

The landmarks are not random dots: every structure is drawn through (or around) the anatomical points of a
template, after one random similarity transform (rotation +-8 deg, scale 0.85-1.15, translation) and a small
anatomical shape variation (face height, maxillary and mandibular position, mandible length and rotation,
incisor inclination, nose size, soft-tissue thickness, per-point jitter). The transformed points are the
landmarks, so each sits on the structure it names: S in the centre of the sella cup, N at the frontonasal
junction, Me at the lowest point of the symphysis, Go on the mandibular angle, the incisor tips at the tips of
the drawn incisors, the soft-tissue points on the profile, and so on.

Geometry: the template lives on a reference canvas of 640 x 512 pixels (height x width, portrait). Another image
size gets the same head scaled isotropically to fit (centred; the spare band shows more background or neck), so
landmarks scale with the image. At the reference size a pixel is :data:`DEFAULT_SPACING_MM` = 0.42 mm, chosen so
that the mean distances match adult cephalometric norms (S-N about 66 mm, N-Me 127 mm, Ar-Go 46 mm, Go-Me 71 mm;
the field of view is 215 x 269 mm, a little more than an ISBI 2015 image, 193.5 x 240 mm); the cartoon skull
behind the face is shorter than a real one (about 15 cm). :func:`spacing_for_size` gives the spacing at other
sizes.

Everything is deterministic by seed: the same seed gives a byte-identical image and the same landmarks, whatever
``num_landmarks`` is (more landmarks only append points).
"""

from .render import render_cephalogram
from .template import (
    DEFAULT_SPACING_MM,
    DEFAULT_SPLITS,
    EXTRA_LANDMARK_DESCRIPTIONS,
    EXTRA_LANDMARKS,
    GENERATOR_VERSION,
    REFERENCE_SIZE,
    SYNTHETIC_LANDMARKS,
    landmark_names,
    spacing_for_size,
)
from .writer import image_seed, write_synthetic_dataset

__all__ = [
    "DEFAULT_SPACING_MM",
    "DEFAULT_SPLITS",
    "EXTRA_LANDMARK_DESCRIPTIONS",
    "EXTRA_LANDMARKS",
    "GENERATOR_VERSION",
    "REFERENCE_SIZE",
    "SYNTHETIC_LANDMARKS",
    "image_seed",
    "landmark_names",
    "render_cephalogram",
    "spacing_for_size",
    "write_synthetic_dataset",
]
