"""tools/misc/model_index.py: the configs' README.md / metafile.yml / model-index.yml are generated and up to date."""
import csv
import glob
import importlib.util
import os.path as osp

import pytest

from tests.conftest import REPO_ROOT

yaml = pytest.importorskip('yaml')


def load_tool():
    spec = importlib.util.spec_from_file_location('lzu_model_index', osp.join(REPO_ROOT, 'tools/misc/model_index.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def read_yaml(path):
    with open(osp.join(REPO_ROOT, path)) as f:
        return yaml.safe_load(f)


def test_generated_files_are_up_to_date():
    assert tool.stale(tool.generate()) == [], 'run python tools/misc/model_index.py and commit the result'
    assert tool.main(['--check']) == 0


def test_every_config_is_listed_once_in_the_model_index():
    index = read_yaml('model-index.yml')
    models = [m for path in index['Import'] for m in read_yaml(path)['Models']]
    listed = [m['Config'] for m in models]
    on_disk = sorted(osp.relpath(p, REPO_ROOT) for p in glob.glob(osp.join(REPO_ROOT, 'configs', '*', '*.py')))
    assert sorted(listed) == on_disk
    for family in {osp.dirname(p) for p in on_disk}:
        assert osp.isfile(osp.join(REPO_ROOT, family, 'README.md'))
        assert osp.join(family, 'metafile.yml') in index['Import']
    for model in models:
        assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0]
        assert model['Metadata']['Reproduced'] == 'not yet reproduced here'


def test_paper_numbers_reach_the_right_configs():
    models = {m['Config']: m for path in read_yaml('model-index.yml')['Import'] for m in read_yaml(path)['Models']}
    fixed = models['configs/lzu_retinanet/retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x.py']
    assert fixed['Results'][0]['Metrics']['box AP'] == 25.2  # Table 1, 0.5x, LZU fixed
    assert fixed['Metadata']['inference time (ms/im)'][0]['value'] == 36.4
    from_025 = models['configs/lzu_retinanet/retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x_from-0.25x.py']
    assert from_025['Results'][0]['Metrics']['box AP (input from 0.25x)'] == 20.9  # Table 2
    psp = models['configs/lzu_pspnet/pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-64x64.py']
    assert psp['Results'][0]['Metrics']['mIoU'] == 26.7  # Table 3 (and Table 4)
    fcos = models['configs/lzu_fcos3d/fcos3d_r50-caffe-dcn_fpn_head-gn_lzu-fixed_8xb2-1x_nus-mono3d-1x.py']
    assert fcos['Results'][0]['Task'] == '3D Object Detection' and 'NDS' in fcos['Results'][0]['Metrics']
    learned = models['configs/lzu_pspnet/pspnet_r50-fpn_lzu-learned_4xb2-80k_cityscapes-256x256.py']
    assert 'Results' not in learned and 'not in the paper' in learned['Metadata']['Paper Rows']


def test_a_changed_paper_number_makes_the_files_stale(tmp_path):
    src = osp.join(REPO_ROOT, 'tools/reproduce/paper_numbers.csv')
    with open(src, newline='') as f:
        rows = list(csv.DictReader(f))
    hit = next(r for r in rows if (r['table'], r['row'], r['column']) == ('1', '0.5x/lzu-fixed', 'AP'))
    hit['value'] = '99.9'
    changed = tmp_path / 'paper_numbers.csv'
    with open(changed, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert tool.stale(tool.generate(str(changed))) == ['configs/lzu_retinanet/metafile.yml',
                                                       'configs/lzu_retinanet/README.md']
