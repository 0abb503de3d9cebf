"""Installs the ``lzu_mm`` OpenMMLab plugin. The pinned stack is installed by tools/setup_env.sh."""
import os.path as osp

from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open(osp.join(osp.dirname(__file__), 'lzu_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(name):
    with open(osp.join(osp.dirname(__file__), 'requirements', name)) as f:
        return [line.split('#')[0].strip() for line in f if line.split('#')[0].strip()]


setup(
    name='lzu_mm',
    version=read_version(),
    description='LZU (Learning to Zoom and Unzoom, CVPR 2023) for MMDetection, MMSegmentation and MMDetection3D',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    python_requires='>=3.8',
    install_requires=['torch>=2.0', 'numpy<2'],
    extras_require={
        'mm': read_requirements('mminstall.txt'),
        'runtime': read_requirements('runtime.txt'),
        'tests': read_requirements('tests.txt'),
    },
    license='Apache License 2.0',
    zip_safe=False,
)
