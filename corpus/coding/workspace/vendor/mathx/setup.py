from setuptools import setup

setup(name="mathx", version="0.1", py_modules=["mathx"])
