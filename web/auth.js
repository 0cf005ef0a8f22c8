// The sign-in section and the account bar (Firebase Auth, the local emulator).

import {
  createUserWithEmailAndPassword, onAuthStateChanged, signInWithEmailAndPassword, signOut,
} from "firebase/auth";
import { $, fail } from "./dom.js";

/** The local test user (created on first use). */
export const TEST_USER = { email: "test@promptq.local", password: "test-password" };

const UNKNOWN_USER = ["auth/user-not-found", "auth/invalid-credential", "auth/invalid-login-credentials"];

/**
 * Sign in; with `create`, create the account when it does not exist yet.
 * @param {import("firebase/auth").Auth} auth
 * @param {string} email
 * @param {string} password
 * @param {{create: boolean}} options
 * @returns {Promise<void>}
 */
export async function signIn(auth, email, password, { create }) {
  try {
    await signInWithEmailAndPassword(auth, email, password);
  } catch (err) {
    if (!create || !UNKNOWN_USER.includes(err.code)) throw err;
    await createUserWithEmailAndPassword(auth, email, password);
  }
}

/**
 * Wire the sign-in form and the Sign out button; show the sections that fit the auth state.
 * @param {import("firebase/auth").Auth} auth
 * @param {{onSignedIn: (user: import("firebase/auth").User) => void, onSignedOut: () => void}} hooks
 */
export function setupAuth(auth, { onSignedIn, onSignedOut }) {
  onAuthStateChanged(auth, (user) => {
    $("auth-section").hidden = !!user;
    $("account").hidden = !user;
    $("run-section").hidden = !user;
    if (!user) {
      onSignedOut();
      return;
    }
    $("user-email").textContent = user.email ?? user.uid;
    onSignedIn(user);
  });

  const attempt = (promise) => {
    $("auth-error").hidden = true;
    promise.catch((err) => fail($("auth-error"), err));
  };
  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    attempt(signIn(auth, $("email").value, $("password").value, { create: false }));
  });
  $("signup").addEventListener("click", () => {
    if ($("signin-form").reportValidity()) attempt(createUserWithEmailAndPassword(auth, $("email").value, $("password").value));
  });
  $("signin").addEventListener("click", () => {
    attempt(signIn(auth, TEST_USER.email, TEST_USER.password, { create: true }));
  });
  $("signout").addEventListener("click", () => {
    history.replaceState(null, "", location.pathname);
    signOut(auth);
  });
}
