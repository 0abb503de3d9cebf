"""ArgoverseHDDataset on an Argoverse-HD-format set built from real images."""
import json
import os.path as osp

import pytest

import lzu_mm.mmdet  # noqa: F401
from mmdet.registry import DATASETS


def _dataset(argoverse_hd, ann_file=None, pipeline=()):
    return DATASETS.build(
        dict(type='ArgoverseHDDataset', data_root=argoverse_hd['root'], ann_file=ann_file or argoverse_hd['train'],
             data_prefix=dict(img=argoverse_hd['img_prefix']), test_mode=True, pipeline=list(pipeline)))


def test_paths_sequence_fields_and_boxes(argoverse_hd):
    dataset = _dataset(argoverse_hd)
    assert len(dataset) == argoverse_hd['num_images'] == 6
    assert dataset.metainfo['classes'][0] == 'person' and len(dataset.metainfo['classes']) == 8
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    assert [i['fid'] for i in infos] == list(range(6))
    assert all(i['sid'] == 0 and i['seq_name'] == 'n015-2018-07-24-11-22-45' for i in infos)
    for i in infos:
        assert osp.isfile(i['img_path']), i['img_path']
        assert osp.basename(i['img_path']).startswith(f"{i['fid']:06d}_")
        assert osp.dirname(i['img_path']).endswith(osp.join('val', 'n015-2018-07-24-11-22-45', 'ring_front_center'))
    assert sum(len(i['instances']) for i in infos) == argoverse_hd['num_boxes'] > 0


def test_sid_fid_reach_the_metainfo(argoverse_hd):
    dataset = _dataset(argoverse_hd, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(320, 200), keep_ratio=True),
        dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'sid',
                                              'fid'))
    ])
    sample = dataset[3]['data_samples']
    assert sample.sid == 0 and sample.fid == 3 and sample.ori_shape == (900, 1600)


@pytest.mark.parametrize('broken', ['seq_dirs', 'sid', 'sid_range'])
def test_malformed_annotations_fail_at_load(argoverse_hd, tmp_path, broken):
    with open(argoverse_hd['train']) as f:
        ann = json.load(f)
    if broken == 'seq_dirs':
        del ann['seq_dirs']
    elif broken == 'sid':
        del ann['images'][0]['sid']
    else:
        ann['images'][0]['sid'] = 5
    path = str(tmp_path / 'broken.json')
    with open(path, 'w') as f:
        json.dump(ann, f)
    with pytest.raises(ValueError, match='broken.json'):
        _dataset(argoverse_hd, ann_file=path)
