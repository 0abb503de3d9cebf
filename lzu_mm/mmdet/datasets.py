"""Argoverse-HD (Li, Wang, Ramanan, "Towards Streaming Perception", ECCV 2020) for MMDetection."""
import os.path as osp
from typing import List, Union

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

#: The 8 Argoverse-HD categories, in the order of its annotation files.
ARGOVERSE_HD_CLASSES = ('person', 'bicycle', 'car', 'motorcycle', 'bus', 'truck', 'traffic_light', 'stop_sign')


@DATASETS.register_module()
class ArgoverseHDDataset(CocoDataset):
    """Argoverse-HD: COCO-format boxes over 1920x1200 driving video.

    The annotation json is COCO plus sequence fields: top-level ``sequences``
    (sequence names) and ``seq_dirs`` (image folder of each sequence, relative
    to ``data_prefix['img']``), and per image ``name`` (file name in its
    folder), ``sid`` (index into ``seq_dirs``), ``fid`` (frame index in the
    sequence), ``width``, ``height``. The image path is
    ``data_prefix['img'] / seq_dirs[sid] / name``.

    Every sample gets ``sid``, ``fid`` and ``seq_name`` in its data info; add
    them to ``PackDetInputs.meta_keys`` to have them in the metainfo (the
    adaptive-saliency work needs the previous frame of the same sequence).
    Evaluation is mmdet's ``CocoMetric`` on the same json.

    Raises:
        ValueError: at load time, if the json lacks ``seq_dirs`` or an image
            lacks ``name`` / ``sid`` / ``fid``, or ``sid`` is out of range (the
            message names the annotation file and the image id).
    """

    METAINFO = dict(
        classes=ARGOVERSE_HD_CLASSES,
        palette=[(220, 20, 60), (119, 11, 32), (0, 0, 142), (0, 0, 230), (106, 0, 228), (0, 60, 100),
                 (250, 170, 30), (220, 220, 0)])

    def load_data_list(self) -> List[dict]:
        self._seq_dirs = None
        self._sequences = None
        try:
            return super().load_data_list()
        finally:
            self._seq_dirs = self._sequences = None

    def _sequence_fields(self):
        if self._seq_dirs is None:
            dataset = self.coco.dataset
            if not isinstance(dataset.get('seq_dirs'), list):
                raise ValueError(f'{self.ann_file!r} is not an Argoverse-HD annotation file: expected a top-level '
                                 f'list "seq_dirs" (image folder of each sequence)')
            self._seq_dirs = dataset['seq_dirs']
            sequences = dataset.get('sequences')
            self._sequences = sequences if isinstance(sequences, list) else [None] * len(self._seq_dirs)
        return self._seq_dirs, self._sequences

    def parse_data_info(self, raw_data_info: dict) -> Union[dict, List[dict]]:
        """Resolve the image path from ``seq_dirs[sid]/name`` and add ``sid``, ``fid``, ``seq_name``."""
        seq_dirs, sequences = self._sequence_fields()
        img_info = raw_data_info['raw_img_info']
        missing = [k for k in ('name', 'sid', 'fid') if k not in img_info]
        if missing:
            raise ValueError(f'{self.ann_file!r}: image id {img_info.get("img_id")} lacks the Argoverse-HD '
                             f'fields {missing} (expected name, sid, fid)')
        sid = int(img_info['sid'])
        if not 0 <= sid < len(seq_dirs):
            raise ValueError(f'{self.ann_file!r}: image id {img_info.get("img_id")} has sid={sid}, expected an '
                             f'index into seq_dirs (0..{len(seq_dirs) - 1})')
        img_info = dict(img_info, file_name=osp.join(seq_dirs[sid], img_info['name']))
        data_info = super().parse_data_info(dict(raw_data_info, raw_img_info=img_info))
        data_info.update(sid=sid, fid=int(img_info['fid']), seq_name=sequences[sid] if sid < len(sequences) else None)
        return data_info
