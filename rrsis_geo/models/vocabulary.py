"""Words of the datasets the models are trained on: categories, attributes and relations.

A config's ``vocabulary`` lists them for completion in the user interfaces; BTDNet's key-phrase
masking (:mod:`.phrase_mask`) uses the category phrases to find the object an expression names.
"""

from __future__ import annotations

from typing import List

#: RefSegRS (Yuan et al., Table I): 14 categories, 5 attributes, 7 spatial relations
REFSEGRS_CATEGORIES = [
    "road", "vehicle", "car", "van", "building", "truck", "trailer", "bus", "road marking", "bikeway",
    "sidewalk", "tree", "low vegetation", "impervious surface",
]
REFSEGRS_ATTRIBUTES = ["paved", "unpaved", "light-duty", "heavy-duty", "long"]
REFSEGRS_RELATIONS = [
    "in the parking area", "with a parking lot", "driving on the road", "along the road", "along with tree",
    "on the road", "surrounded by building",
]

#: RRSIS-D (Liu et al., from RSVG/DIOR): 20 categories and the position words of its expressions
RRSISD_CATEGORIES = [
    "airplane", "airport", "baseball field", "basketball court", "bridge", "chimney", "dam",
    "expressway service area", "expressway toll station", "golf field", "ground track field", "harbor",
    "overpass", "ship", "stadium", "storage tank", "tennis court", "train station", "vehicle", "windmill",
]
RRSISD_RELATIONS = [
    "on the left", "on the right", "at the top", "at the bottom", "in the middle", "in the upper left",
    "in the upper right", "in the lower left", "in the lower right", "next to",
]

#: the Dubai aerial data of the light default (building, unpaved land, road, vegetation, water)
DUBAI_CATEGORIES = ["building", "land", "unpaved area", "road", "vegetation", "water"]
DUBAI_RELATIONS = ["along the road", "surrounded by building", "along the water", "next to the road", "near the water"]

#: further object words that often head an expression (for key-phrase masking only)
EXTRA_CATEGORIES = [
    "lane marking", "parking lot", "parking area", "parking place", "house", "grass", "field", "river",
    "lake", "pool", "swimming pool", "roundabout", "railway", "boat", "plane", "tank", "court",
]


def _unique(words: List[str]) -> List[str]:
    seen = set()
    return [w for w in words if not (w in seen or seen.add(w))]


REFSEGRS_VOCABULARY = REFSEGRS_CATEGORIES + REFSEGRS_ATTRIBUTES + REFSEGRS_RELATIONS
RRSISD_VOCABULARY = RRSISD_CATEGORIES + RRSISD_RELATIONS
DUBAI_VOCABULARY = DUBAI_CATEGORIES + DUBAI_RELATIONS
#: every category phrase above, once
ALL_CATEGORIES = _unique(REFSEGRS_CATEGORIES + RRSISD_CATEGORIES + DUBAI_CATEGORIES + EXTRA_CATEGORIES)
