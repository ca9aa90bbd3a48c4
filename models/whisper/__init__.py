"""Whisper tiny.en: conversion from CTranslate2, ONNX export (torch), and inference (numpy)."""
