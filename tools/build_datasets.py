#!/usr/bin/env python
"""Rebuild the embedded datasets in ``datasets/`` from Debian packages.

Usage (from the repository root)::

    sudo apt-get install openclipart-png dataset-fashion-mnist espeak-ng
    python tools/build_datasets.py            # writes datasets/clipart, clipart_extra, *.npz
    python tools/build_datasets.py --check    # rebuild into a temp dir and compare with the manifest

The build is deterministic: re-running it produces byte-identical files (fixed
file order, fixed seeds, fixed zip timestamps, no PNG metadata), and it writes
``datasets/MANIFEST.sha256`` (``sha256sum -c`` format, paths relative to
``datasets/``), which :mod:`tlcourse.data` checks at load time.

The clip-art curation (which source folders make a class, which pictures were
dropped after looking at them and why) is the ``CLIPART`` table below.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pooch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tlcourse.data import drawing_groups, group_key  # noqa: E402  (the course's own grouping)

OPENCLIPART = Path("/usr/share/openclipart/png")
FASHION = Path("/usr/share/datasets/fashion-mnist")
EXPECTED_VERSIONS = {
    "openclipart-png": "1:0.18+dfsg-19",
    "dataset-fashion-mnist": "0.0~git20200523.55506a9-1",
    "espeak-ng": "1.51+dfsg-10+deb12u2",
}
SIZE = 128
MARGIN = 0.06  # white border around the cropped object, as a fraction of the side
SPLITS = {"test": 0.2, "val": 0.2}  # the rest is train

# --------------------------------------------------------------------------
# Clip-art curation. Each class: source folders (recursive), extra single
# files, and files dropped after looking at contact sheets of every folder.
# Exact duplicates (same pixels) are removed automatically (first path wins).
# --------------------------------------------------------------------------
CLIPART: dict[str, dict[str, list[str]]] = {
    "fruit": {
        "dirs": ["food/fruit"],
        "files": [],
        "drop": [
            "food/fruit/apple_juice_box.png",  # juice box, not fruit
            "food/fruit/apple_juice_box_bw.png",  # juice box
            "food/fruit/apple_mateya_01.png",  # product label with barcode (10k x 16k px)
            "food/fruit/banana_mateya_01.png",  # product label with barcode
            "food/fruit/candied_apples_ganson.png",  # candy apples on sticks, several objects
            "food/fruit/champignon_01.png",  # a mushroom
            "food/fruit/eris_apple_nurbldoff_01.png",  # outline apple with a letter logo
            "food/fruit/fruitcollection_leif_lod_07.png",  # photo of a fruit bowl (scene)
            "food/fruit/gumnut_black_01.png",  # gum nut silhouette
            "food/fruit/gumnut_shaded_01.png",  # gum nut
            "food/fruit/juice_glass_andremarcel._01.png",  # a drink
            "food/fruit/kallisti-grenade_1_nurbl_01.png",  # a grenade
            "food/fruit/pie_apple.png",  # pies belong to desserts
            "food/fruit/pie_apple_bw.png",
            "food/fruit/pie_cherry.png",
            "food/fruit/pie_cherry_bw.png",
            "food/fruit/slate-apple_benji_park_01.png",  # school slate with an apple
            "food/fruit/straw_tote_linda_kim_01.png",  # a bag
            "food/fruit/tile_orange_gabriel_lo_i_01.png",  # tiny icon tile
            "food/fruit/tree_whit_fruits_01.png",  # a tree
            "food/fruit/turkey_platter_01_with_fruit_and_vegitables_01.png",  # roast turkey
        ],
    },
    "mammals": {
        "dirs": ["animals/mammals"],
        "files": [],
        "drop": [
            "animals/mammals/bears/sleeping_bear_under_sta_01.png",  # snow-globe scene
            "animals/mammals/bears/sleeping_bear_under_sta_02.png",
            "animals/mammals/bears/sleeping_bear_under_sta_03.png",
            "animals/mammals/bunny_01.png",  # pink rabbit on a green tile
            "animals/mammals/cartoon_squirrel_mike_sm1.png",  # squirrel reading a book
            "animals/mammals/crazy_monkey_shandy_brow_01.png",  # monkey on a star badge
            "animals/mammals/dog_01_drawn_with_strai_02.png",  # dog in a wizard costume
            "animals/mammals/dog_02_drawn_with_strai_01.png",  # dog in a wizard costume
            "animals/mammals/dogs/bulldog_puppy_ganson.png",  # photo-like, gradient background
            "animals/mammals/dolphin_01.png",  # abstract splash
            "animals/mammals/elephant_outline_matthe_r.png",  # nearly invisible outline
            "animals/mammals/elephant_symbol_ganson.png",  # striped emblem in a disc
            "animals/mammals/horses/horse_1_konstantin_r._01.png",  # horse with a big sun
            "animals/mammals/horses/horse_1_rotkevich_konsat_01.png",  # same
            "animals/mammals/horses/horse_2_konstantin_r._01.png",  # paint splash
            "animals/mammals/horses/mechorse.png",  # tiny sketch
            "animals/mammals/housecats/cartoon_vgcats_fanart_01.png",  # cartoon person
            "animals/mammals/housecats/cat_scrathing_post_benji_01.png",  # a scratching post
            "animals/mammals/housecats/gatto_nero_architetto_fr_01.png",  # halloween scene
            "animals/mammals/housecats/le_mie_tigri_preferite_a_01.png",  # two cats
            "animals/mammals/mhooo_peterm_.png",  # face with text
            "animals/mammals/raccoon_ganson.png",  # raccoon in a bin (two objects)
            "animals/mammals/shaezy_peterm_.png",  # face with text
            "animals/mammals/skoynk_peterm_.png",  # face with text
            "animals/mammals/squeek_peterm_.png",  # face with text
            "animals/mammals/stambecco_valdostano_arc_01.png",  # silhouette on orange panel
            "animals/mammals/toro_al_tramonto_archite_01.png",  # landscape
        ],
    },
    "birds": {
        "dirs": ["animals/birds"],
        "files": [],
        "drop": [
            "animals/birds/acquila_architetto_franc_04.png",  # cut-off fragment
            "animals/birds/baby-tux_alex_kuehne_01.png",  # Tux logo on a blue tile
            "animals/birds/baby_tux_01.png",  # Tux logo
            "animals/birds/baby_tux_rory_mccann_01.png",  # Tux with Debian logo
            "animals/birds/cigni_bianchi_e_neri_arc_01.png",  # swans on a lake (scene)
            "animals/birds/cigno_di_notte_nella_pa_01.png",  # night scene on a purple tile
            "animals/birds/contour_bat.png",  # a bat, not a bird
            "animals/birds/duck_yellow_ii_kurt_cagl_.png",  # 'Linked Image Not Found'
            "animals/birds/mirjam_meijer_mirjam_mei_01.png",  # flowers and a butterfly
            "animals/birds/ninja_tux_rory_mccann_01.png",  # Tux with Debian logo
            "animals/birds/penguin/plush_tux_anita_01.png",  # Tux logo
            "animals/birds/penguin/tux_didier_fabert_01.png",  # 'Linked Image Not Found'
            "animals/birds/stormo_di_uccelli_archit_01.png",  # a flock (many objects)
            "animals/birds/turkey_on_platter_01.png",  # roast turkey
            "animals/birds/wing_mitchell_johnson_si_.png",  # tiny, nearly blank
        ],
    },
    "bugs": {
        "dirs": ["animals/bugs"],
        "files": [],
        "drop": [
            "animals/bugs/blue_dragonfly_ghuul_ghu_01.png",  # dark photo-like tile
            "animals/bugs/caterpillar_david_wislon_01.png",  # cartoon with knife and fork
            "animals/bugs/lumaca_architetto_france_01.png",  # a snail
            "animals/bugs/lumaca_turbo_architetto__01.png",  # a snail
            "animals/bugs/quattro_farfalle_archite_01.png",  # four butterflies
            "animals/bugs/ragno_figo_architetto_fr_01.png",  # yellow splat
            "animals/bugs/zanzara_cretina_architet_01.png",  # fairy with hearts
        ],
    },
    "desserts": {
        "dirs": ["food/desserts"],
        "files": [],
        "drop": [
            "food/desserts/cake_mateya_01.png",  # product label with barcode
            "food/desserts/crazy_cookie_dave_pena_01.png",  # cookie cartoon character
            "food/desserts/gelato_all_39_italiana_a_01.png",  # two cones, overlapping
        ],
    },
    "beverages": {
        "dirs": ["food/beverages"],
        "files": [],
        "drop": [
            "food/beverages/alcohol/bottiglia_di_vino_pregi_01.png",  # bottle + glass
            "food/beverages/alcohol/martini_glass_k_yager_01.png",  # tiny
            "food/beverages/alcohol/martini_glass_k_yager_02.png",  # tiny
            "food/beverages/alcohol/noi_due_insieme_brindis_01.png",  # party scene
            "food/beverages/alcohol/wine_corks_ganson.png",  # corks
            "food/beverages/alcohol/wooden_barrel_petri_lumm_01.png",  # tiny barrel
            "food/beverages/baby_bottle_01.png",  # tiny
            "food/beverages/ice_cube_jarno_vasamaa_.png",  # ice cube
            "food/beverages/icecube_benji_park_.png",  # ice cube
            "food/beverages/lattine_di_birra_archite_01.png",  # six-pack (many objects)
            "food/beverages/milk_mateya_01.png",  # product label with barcode
            "food/beverages/mug_toh_yen_cheng_01.png",  # tiny
            "food/beverages/mug_toh_yen_cheng_02.png",  # tiny
            "food/beverages/teiera_tazza_architetto__01.png",  # teapot and cup
        ],
    },
    "vehicles": {  # road vehicles: cars, trucks, buses (no aircraft, bikes, boats, signs)
        "dirs": ["transportation/vehicles"],
        "files": [
            "transportation/car_jamin_ellis_.png",
            "transportation/dodge_neon_green_ganson.png",
            "transportation/dodge_neon_pink_ganson.png",
            "transportation/fire_engine_romus_01.png",
            "transportation/formula_one_car_gerald_g_01.png",
            "transportation/road_runner_ganson.png",
            "transportation/skoda_car_alejandro_teja_.png",
            "transportation/small_truck_steffen_gluc_01.png",
            "transportation/sportcar_sergio_luiz_ara_01.png",
            "transportation/toyota_land_cruiser_ganson.png",
            "transportation/truck_jarno_vasamaa1.png",
            "transportation/truck_jarno_vasamaa_.png",
        ],
        "drop": [
            "transportation/vehicles/aircraft_jarno_vasamaa1.png",  # aircraft
            "transportation/vehicles/aircraft_jarno_vasamaa2.png",
            "transportation/vehicles/aircraft_jarno_vasamaa3.png",
            "transportation/vehicles/aircraft_jarno_vasamaa4.png",
            "transportation/vehicles/aircraft_jarno_vasamaa_.png",
            "transportation/vehicles/airplane_nicu_buculei_01.png",
            "transportation/vehicles/departing_plane_01.png",
            "transportation/vehicles/military_airplane_mo_01.png",
            "transportation/vehicles/plane_silhouet_mo_01.png",
            "transportation/vehicles/toy_paper_plane_01.png",
            "transportation/vehicles/rocket.png",
            "transportation/vehicles/wing_mitchell_johnson_si_.png",
            "transportation/vehicles/autos_01.png",  # two cars
            "transportation/vehicles/bus_01.png",  # two buses
            "transportation/vehicles/bicicletta_cycle_archite_01.png",  # bicycles
            "transportation/vehicles/bicycle_01.png",
            "transportation/vehicles/vtt_02.png",
            "transportation/vehicles/crossroads.png",  # road signs
            "transportation/vehicles/curve_ahead.png",
            "transportation/vehicles/cycle_lane.png",
            "transportation/vehicles/cycle_route.png",
            "transportation/vehicles/parking_romus_01.png",
            "transportation/vehicles/quay_sign_01.png",
            "transportation/vehicles/lighthouse_01.png",  # a lighthouse
            "transportation/vehicles/m1_abrams_main_battle_tank_01.png",  # a tank
            "transportation/vehicles/sledge_01.png",  # a sledge
            "transportation/vehicles/the_mad_little_ship_core_01.png",  # ship in a bottle
            "transportation/vehicles/trawler_01.png",  # a boat
            "transportation/vehicles/trattore_architetto_fran_01.png",  # tractor with farmer
            "transportation/vehicles/redcar_marcelo_caiafa_.png",  # tiny
            "transportation/vehicles/shelby_cobra_blueprint_i_01.png",  # faint blueprint
            "transportation/vehicles/shelby_cobra_car_bluepr_.png",  # faint blueprint
            # near-identical Hummer silhouettes: keep a few, drop the rest
            "transportation/vehicles/hummer_07.png",
            "transportation/vehicles/hummers/hummer_02.png",
            "transportation/vehicles/hummers/hummer_03.png",
            "transportation/vehicles/hummers/hummer_04.png",
            "transportation/vehicles/hummers/hummer_05.png",
            "transportation/vehicles/hummers/hummer_06.png",
        ],
    },
}

# --------------------------------------------------------------------------
# More clip art for notebook 03's cross-validated comparison (not used by
# notebooks 01-02, whose fixed 7-class split stays as it is). Three new
# classes and a few pictures for existing classes, found outside the folders
# above, curated the same way (contact sheets; drops listed with reasons).
# Pictures whose pixels equal a picture already in clipart/ are skipped.
# Written to clipart_extra/<class>/<name>.png (no split: 03 pools everything
# and cross-validates).
# --------------------------------------------------------------------------
CLIPART_EXTRA: dict[str, dict[str, list[str]]] = {
    "flowers": {
        "dirs": ["plants/flowers"],
        "files": [],
        "drop": [
            "plants/flowers/cactus_linda_kim_01.png",  # a cactus
            "plants/flowers/cartoon_tree_01.png",  # a tree (in trees)
            "plants/flowers/magnolia-white_patricia__01.png",  # flower on a black tile
            "plants/flowers/mirjam_meijer_mirjam_mei_01.png",  # butterflies, flowers and text
        ],
    },
    "houses": {
        "dirs": ["buildings/homes"],
        "files": [],
        "drop": [
            "buildings/homes/chalet_di_montagna_arch_01.png",  # small scene with text
            "buildings/homes/home10.png",  # igloo
            "buildings/homes/home11.png",  # teepee
            "buildings/homes/home13.png",  # tent
            "buildings/homes/home8.png",  # tent
            "buildings/homes/houses_jon_phillips_01.png",  # broken render (dark blob)
            "buildings/homes/lighthouse_matthew_gates_.png",  # a lighthouse
            "buildings/homes/lowtec_house_christoph_b_01.png",  # an outhouse
            "buildings/homes/pinkhome3.png",  # a castle
            "buildings/homes/pinkhome-simple.png",  # near-copy of pinkhome.png
        ],
    },
    "trees": {
        "dirs": ["plants/trees"],
        "files": ["plants/albero_architetto_france_01.png", "plants/arbre_modern_jean-victor_01.png", "plants/palmtree_b_r_kessels_.png"],
        "drop": [
            "plants/trees/bowsaw_benji_park_01.png",  # a saw
            "plants/trees/bypasspruner_benji_park_01.png",  # pruning shears
            "plants/trees/christmas_balls_mo_01.png",  # baubles
            "plants/trees/fall_coloured_leaf_geral_01.png",  # leaves
            "plants/trees/fall_coloured_leaf_geral_02.png",  # leaves
            "plants/trees/fall_scene_in_a_circle_a_01.png",  # a scene
            "plants/trees/fern_mo_01.png",  # a fern leaf
            "plants/trees/tree_01.png",  # silhouette on a cliff, scene
        ],
    },
    "fruit": {"dirs": [], "drop": [],
              "files": ["food/apple_bitten_dan_gerhard_01.png", "food/apple_with_worm_dan_gerh_01.png",
                        "food/grapes_leif_lodahl_02.png", "food/watermelon_james_kilfige_01.png"]},
    "mammals": {"dirs": [], "drop": [],
                "files": ["animals/armadillo_architetto_fra_01.png", "animals/bison_leif_lodahl_01.png",
                          "animals/seal.png", "animals/seal_sek_.png"]},
    "birds": {"dirs": [], "drop": [],
              "files": ["animals/emperor_penguin_ralf_ste_01.png", "animals/pinguino_col_piccolo_arc_01.png",
                        "animals/ralf_ark.in-berlin.de_ra_01.png"]},
    "bugs": {"dirs": [], "drop": [], "files": ["animals/punaisa_01.png"]},
}


FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FASHION_COUNTS = {"train": 500, "val": 100, "test": 200}  # per class
FASHION_SEED = 20240501


def package_version(name: str) -> str:
    """Installed Debian version of ``name`` (empty string if unknown)."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", name],
            capture_output=True, text=True, check=False,
        )
        return out.stdout.strip()
    except OSError:
        return ""


# ------------------------------------------------------------------ clip art
def normalise_clipart(path: Path, size: int = SIZE) -> Image.Image:
    """Composite on white, crop to the object, pad to a square, resize."""
    with Image.open(path) as im:
        im = im.convert("RGBA")
    bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
    bg.alpha_composite(im)
    rgb = bg.convert("RGB")
    # bounding box of the non-white pixels
    diff = Image.eval(rgb.convert("L"), lambda v: 255 if v < 250 else 0)
    box = diff.getbbox() or (0, 0, rgb.width, rgb.height)
    rgb = rgb.crop(box)
    side = max(rgb.size)
    side_m = int(round(side * (1 + 2 * MARGIN)))
    square = Image.new("RGB", (side_m, side_m), (255, 255, 255))
    square.paste(rgb, ((side_m - rgb.width) // 2, (side_m - rgb.height) // 2))
    return square.resize((size, size), Image.Resampling.LANCZOS)


def clipart_sources(cls: str, table: dict | None = None) -> list[Path]:
    spec = (CLIPART if table is None else table)[cls]
    drop = set(spec["drop"])
    paths: list[str] = []
    for d in spec["dirs"]:
        paths += sorted(str(p.relative_to(OPENCLIPART)) for p in (OPENCLIPART / d).rglob("*.png"))
    paths += spec["files"]
    missing = [p for p in drop | set(spec["files"]) if not (OPENCLIPART / p).exists()]
    if missing:
        raise SystemExit(f"curation lists files that are not in the package: {missing}")
    return [OPENCLIPART / p for p in paths if p not in drop]


#: One drawing whose pixels are far apart (a detailed drawing and its silhouette), found by
#: eye on a contact sheet of the cross-split pairs whose 32-px ink thumbnails are close
#: (cosine >= 0.95; the other such pairs are different drawings, e.g. two apples). Kept on one side.
SAME_DRAWING: dict[str, list[tuple[str, str]]] = {
    "vehicles": [("hummer_01.png", "hummer_01_a84925.png")],  # grey Hummer and its black silhouette
}


def assign_splits(images: dict[str, Image.Image], same: list[tuple[str, str]] = ()) -> dict[str, str]:
    """Deterministic ~60/20/20 split of one class's pictures (name -> normalised image), by drawing.

    A drawing, its recolourings and its black-and-white copy share a side: the
    groups are :func:`tlcourse.data.drawing_groups` of the normalised pixels
    (blurred edge maps, or a shared :func:`tlcourse.data.group_key`), joined
    with the pairs in ``same`` (:data:`SAME_DRAWING`). Groups
    are ordered by the sha256 of their smallest name key and fill test, then
    val, each with whole groups that fit (so a big group cannot overfill a
    small split); the rest is train.
    """
    names = sorted(images)
    x = np.stack([np.asarray(images[n].convert("RGB")) for n in names])
    ids = drawing_groups(x, np.zeros(len(names), int), names)
    for a, b in same:
        ids[ids == ids[names.index(b)]] = ids[names.index(a)]
    groups: dict[str, list[str]] = {}
    for gid in sorted(set(ids.tolist())):
        members = [n for n, i in zip(names, ids) if i == gid]
        groups[min(group_key(n) for n in members)] = members
    order = sorted(groups, key=lambda k: hashlib.sha256(k.encode()).hexdigest())
    want = {s: round(f * len(names)) for s, f in SPLITS.items()}
    got = dict.fromkeys(want, 0)
    out: dict[str, str] = {}
    for key in order:  # fill test, then val, with whole groups that fit; the rest is train
        size = len(groups[key])
        split = next((s for s in ("test", "val") if got[s] + size <= want[s]), "train")
        got[split] = got.get(split, 0) + size
        out.update(dict.fromkeys(groups[key], split))
    return out


def unseen_digest(src: Path, seen: dict[str, str]) -> str | None:
    """The pixel hash of ``src``, recorded in ``seen``; ``None`` (with a note) if already seen."""
    with Image.open(src) as im:
        digest = hashlib.sha256(im.convert("RGBA").tobytes()).hexdigest()
    if digest in seen:
        print(f"  duplicate skipped: {src.relative_to(OPENCLIPART)} (= {seen[digest]})")
        return None
    seen[digest] = str(src.relative_to(OPENCLIPART))
    return digest


def build_clipart(out_dir: Path, seen: dict[str, str] | None = None) -> dict[str, dict[str, int]]:
    root = out_dir / "clipart"
    if root.exists():
        shutil.rmtree(root)
    counts: dict[str, dict[str, int]] = {}
    seen = {} if seen is None else seen
    for cls in sorted(CLIPART):
        images: dict[str, Image.Image] = {}
        for src in clipart_sources(cls):
            digest = unseen_digest(src, seen)
            if digest is None:
                continue
            name = src.stem.strip("._-").replace(" ", "_") + ".png"
            if name in images:
                name = f"{src.stem}_{digest[:6]}.png"
            images[name] = normalise_clipart(src)
        splits = assign_splits(images, SAME_DRAWING.get(cls, []))
        counts[cls] = {"train": 0, "val": 0, "test": 0}
        for name in sorted(images):
            split = splits[name]
            dest = root / split / cls / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            images[name].save(dest, format="PNG", optimize=True)
            counts[cls][split] += 1
        print(f"  {cls:10s} {counts[cls]}")
    return counts


def build_clipart_extra(out_dir: Path, seen: dict[str, str]) -> dict[str, int]:
    """``clipart_extra/<class>/<name>.png``: more pictures for notebook 03's pooled comparison.

    ``seen`` holds the pixel hashes of ``clipart/`` (from :func:`build_clipart`),
    so a picture already there is not added twice.
    """
    root = out_dir / "clipart_extra"
    if root.exists():
        shutil.rmtree(root)
    counts: dict[str, int] = {}
    for cls in sorted(CLIPART_EXTRA):
        counts[cls] = 0
        for src in clipart_sources(cls, CLIPART_EXTRA):
            digest = unseen_digest(src, seen)
            if digest is None:
                continue
            dest = root / cls / (src.stem.strip("._-").replace(" ", "_") + ".png")
            if dest.exists():
                dest = dest.with_name(f"{src.stem}_{digest[:6]}.png")
            dest.parent.mkdir(parents=True, exist_ok=True)
            normalise_clipart(src).save(dest, format="PNG", optimize=True)
            counts[cls] += 1
        print(f"  {cls:10s} {counts[cls]}")
    return counts


# ------------------------------------------------------------- fashion mnist
def read_idx_gz(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed`` but with fixed zip timestamps (reproducible)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key in arrays:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def build_fashion(out_dir: Path) -> dict[str, dict[str, int]]:
    xtr = read_idx_gz(FASHION / "train-images-idx3-ubyte.gz")
    ytr = read_idx_gz(FASHION / "train-labels-idx1-ubyte.gz")
    xte = read_idx_gz(FASHION / "t10k-images-idx3-ubyte.gz")
    yte = read_idx_gz(FASHION / "t10k-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(FASHION_SEED)
    idx = {"train": [], "val": [], "test": []}
    ntr, nva, nte = FASHION_COUNTS["train"], FASHION_COUNTS["val"], FASHION_COUNTS["test"]
    for c in range(10):
        pool = rng.permutation(np.flatnonzero(ytr == c))
        idx["train"].append(np.sort(pool[:ntr]))
        idx["val"].append(np.sort(pool[ntr: ntr + nva]))
        idx["test"].append(np.sort(rng.permutation(np.flatnonzero(yte == c))[:nte]))
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        sel = np.sort(np.concatenate(idx[split]))  # original order, classes interleaved
        xs, ys = (xte, yte) if split == "test" else (xtr, ytr)
        arrays[f"x_{split}"] = xs[sel].astype(np.uint8)
        arrays[f"y_{split}"] = ys[sel].astype(np.uint8)
        arrays[f"index_{split}"] = sel.astype(np.int32)  # row in the original idx file
    arrays["class_names"] = np.array(FASHION_CLASSES)
    _write_npz(out_dir / "fashion_mnist.npz", arrays)
    counts = {
        name: {s: int((arrays[f"y_{s}"] == c).sum()) for s in ("train", "val", "test")}
        for c, name in enumerate(FASHION_CLASSES)
    }
    print(f"  fashion_mnist: {FASHION_COUNTS} per class")
    return counts


# ------------------------------------------------------------- spoken words
# The distant domain of notebook 03: log-mel spectrograms (images of sound) of
# ten spoken command words, synthesised offline with espeak-ng. Every clip's
# voice, variant, speed, pitch, noise level and time offset are drawn from one
# seeded generator, so the build is deterministic (espeak-ng's output for the
# same arguments is byte-identical).
ESPEAK = "espeak-ng"
WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
SPEECH_VOICES = ["en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
                 "en-029"]
SPEECH_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "croak", "klatt",
                   "klatt2"]
SPEECH_PER_WORD = 60
SPEECH_SEED = 20261129
SPEC_SIZE = 64          # 64 mel bands x 64 frames
SPEC_RATE = 22050       # espeak-ng's sample rate
SPEC_SECONDS = 1.0


def speech_clip(word: str, voice: str, variant: str, speed: int, pitch: int) -> np.ndarray:
    """One utterance from espeak-ng as float32 samples at 22,050 Hz."""
    from scipy.io import wavfile

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "clip.wav"
        subprocess.run([ESPEAK, "-v", f"{voice}+{variant}", "-s", str(speed), "-p", str(pitch),
                        "-w", str(wav), word], check=True, capture_output=True)
        rate, x = wavfile.read(wav)
    if rate != SPEC_RATE:
        raise SystemExit(f"espeak-ng wrote {rate} Hz, expected {SPEC_RATE}")
    return x.astype(np.float32) / 32768.0


def log_mel_spectrogram(x: np.ndarray, size: int = SPEC_SIZE) -> np.ndarray:
    """``size`` mel bands (60 Hz - 8 kHz) x ``size`` frames of a 1-second clip, in dB, as uint8 (80 dB range).

    Low frequencies are at the bottom of the image, time runs left to right.
    """
    from scipy import signal

    n = int(SPEC_RATE * SPEC_SECONDS)
    nperseg = 512
    hop = (n - nperseg) // (size - 1)
    f, _, power = signal.spectrogram(x[:n], fs=SPEC_RATE, window="hann", nperseg=nperseg,
                                     noverlap=nperseg - hop, nfft=2048, mode="psd")
    power = power[:, :size]
    mel = lambda hz: 2595 * np.log10(1 + hz / 700)  # noqa: E731  (the usual mel scale)
    edges = np.linspace(mel(60), mel(8000), size + 1)
    band = np.clip(np.searchsorted(edges, mel(f), side="right") - 1, -1, size)
    bands = np.stack([power[band == b].mean(axis=0) for b in range(size)])
    db = 10 * np.log10(bands + 1e-12)
    db = np.clip(db, db.max() - 80, db.max())
    img = np.round((db - db.min()) / max(np.ptp(db), 1e-6) * 255).astype(np.uint8)
    return img[::-1]


def build_spoken_words(out_dir: Path) -> dict[str, dict[str, int]]:
    """``spoken_words.npz``: 600 spectrograms (10 words x 60 speakers/settings), split 60/20/20 per word."""
    rng = np.random.default_rng(SPEECH_SEED)
    n = int(SPEC_RATE * SPEC_SECONDS)
    xs, ys, meta = [], [], []
    for label, word in enumerate(WORDS):
        for _ in range(SPEECH_PER_WORD):
            voice = str(rng.choice(SPEECH_VOICES))
            variant = str(rng.choice(SPEECH_VARIANTS))
            speed, pitch = int(rng.integers(110, 211)), int(rng.integers(20, 81))
            snr_db = float(rng.uniform(5, 25))
            clip = speech_clip(word, voice, variant, speed, pitch)
            clip = clip[np.flatnonzero(np.abs(clip) > 1e-3).min():][:n]  # drop leading silence
            start = int(rng.integers(0, n - len(clip) + 1))
            x = np.zeros(n, np.float32)
            x[start:start + len(clip)] = clip
            power = np.mean(clip ** 2)
            x += rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), n).astype(np.float32)
            xs.append(log_mel_spectrogram(x))
            ys.append(label)
            meta.append(f"{voice}+{variant} speed {speed} pitch {pitch} snr {snr_db:.1f} dB offset {start}")
    x, y, meta = np.stack(xs), np.asarray(ys, np.uint8), np.asarray(meta)
    arrays: dict[str, np.ndarray] = {}
    counts = {w: {"train": 0, "val": 0, "test": 0} for w in WORDS}
    split_of = np.empty(len(y), dtype="<U5")
    for label, word in enumerate(WORDS):  # fixed 60/20/20 per word: the clips are i.i.d. draws already
        idx = np.flatnonzero(y == label)
        k = len(idx)
        split_of[idx[: int(0.6 * k)]] = "train"
        split_of[idx[int(0.6 * k): int(0.8 * k)]] = "val"
        split_of[idx[int(0.8 * k):]] = "test"
    for split in ("train", "val", "test"):
        sel = np.flatnonzero(split_of == split)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[sel], y[sel]
        arrays[f"settings_{split}"] = meta[sel]
        for label, word in enumerate(WORDS):
            counts[word][split] = int((y[sel] == label).sum())
    arrays["class_names"] = np.array(WORDS)
    _write_npz(out_dir / "spoken_words.npz", arrays)
    print(f"  spoken_words: {len(y)} clips, {SPEECH_PER_WORD} per word")
    return counts


def write_manifest(out_dir: Path) -> Path:
    files = sorted(
        p for p in out_dir.rglob("*")
        if p.is_file() and (p.suffix in {".png", ".npz"})
    )
    lines = [f"{pooch.file_hash(str(p))}  {p.relative_to(out_dir).as_posix()}" for p in files]
    manifest = out_dir / "MANIFEST.sha256"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def build(out_dir: Path) -> None:
    for pkg, want in EXPECTED_VERSIONS.items():
        have = package_version(pkg)
        if have != want:
            print(f"warning: {pkg} is {have or 'not installed'}, the manifest was made with {want}",
                  file=sys.stderr)
    out_dir.mkdir(parents=True, exist_ok=True)
    print("clipart:")
    seen: dict[str, str] = {}
    build_clipart(out_dir, seen)
    print("clipart_extra:")
    build_clipart_extra(out_dir, seen)
    print("fashion_mnist:")
    build_fashion(out_dir)
    print("spoken_words:")
    build_spoken_words(out_dir)
    m = write_manifest(out_dir)
    print(f"wrote {m} ({len(m.read_text().splitlines())} files)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "datasets")
    ap.add_argument("--check", action="store_true",
                    help="rebuild into a temporary folder and compare with --out's manifest")
    args = ap.parse_args(argv)
    if not args.check:
        build(args.out)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        new = (Path(tmp) / "MANIFEST.sha256").read_text()
        old = (args.out / "MANIFEST.sha256").read_text()
        if new == old:
            print("OK: rebuild is identical to the committed manifest")
            return 0
        print("MISMATCH between rebuild and committed manifest:", file=sys.stderr)
        for line in sorted(set(new.splitlines()) ^ set(old.splitlines()), key=lambda t: t.split()[-1]):
            print(f"  {'rebuilt' if line in new.splitlines() else 'manifest'}: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
