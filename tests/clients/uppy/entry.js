// The browser bundle: Uppy 6 core + its Tus plugin, exposed on window.
import Uppy from '@uppy/core';
import Tus from '@uppy/tus';
window.Uppy = Uppy;
window.UppyTus = Tus;
