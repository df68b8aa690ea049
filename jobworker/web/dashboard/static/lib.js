// The one place the vendored libraries are imported: pages import from here.
import { Fragment, h, render } from "./vendor/preact.js";
import {
  useCallback,
  useEffect,
  useMemo,
  useReducer,
  useRef,
  useState,
} from "./vendor/hooks.js";
import htm from "./vendor/htm.js";

// htm turns tagged templates into Preact elements: no build step, no eval (the page runs under a
// Content-Security-Policy without 'unsafe-eval'). Interpolated values are text, never HTML.
export const html = htm.bind(h);

export {
  Fragment,
  h,
  render,
  useCallback,
  useEffect,
  useMemo,
  useReducer,
  useRef,
  useState,
};
