// The page's bundle (esbuild, from node_modules): Uppy 6 core and the recipe
// of signed-tus.js, exposed on window for cases.js.
import Uppy from '@uppy/core';
import { useSignedTus } from './signed-tus.js';

window.Uppy = Uppy;
window.useSignedTus = useSignedTus;
