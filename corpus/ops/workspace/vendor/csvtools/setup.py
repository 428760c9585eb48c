from setuptools import setup

setup(name="csvtools", version="0.1", py_modules=["csvtools"])
