// The Firebase app, from Vite's environment (.env files or the shell): a project's web config,
// or the local stack's emulators when VITE_FIRESTORE_EMULATOR is set (tests/browser sets them).

import { initializeApp } from "firebase/app";
import { connectAuthEmulator, createUserWithEmailAndPassword, getAuth, signInWithEmailAndPassword } from "firebase/auth";
import { connectFirestoreEmulator, getFirestore } from "firebase/firestore";
import { connectFunctionsEmulator, getFunctions } from "firebase/functions";

const env = import.meta.env;
const app = initializeApp({
  apiKey: env.VITE_FIREBASE_API_KEY ?? "fake-api-key",
  authDomain: env.VITE_FIREBASE_AUTH_DOMAIN,
  projectId: env.VITE_FIREBASE_PROJECT_ID,
  appId: env.VITE_FIREBASE_APP_ID,
});

export const auth = getAuth(app);
export const db = getFirestore(app);
export const functions = getFunctions(app, env.VITE_FUNCTIONS_REGION ?? "us-central1");

const emulated = Boolean(env.VITE_FIRESTORE_EMULATOR);  // "host:port"
if (emulated) {
  const hostPort = (value) => [value.slice(0, value.lastIndexOf(":")), Number(value.slice(value.lastIndexOf(":") + 1))];
  connectAuthEmulator(auth, `http://${env.VITE_AUTH_EMULATOR}`, { disableWarnings: true });
  connectFirestoreEmulator(db, ...hostPort(env.VITE_FIRESTORE_EMULATOR));
  connectFunctionsEmulator(functions, ...hostPort(env.VITE_FUNCTIONS_EMULATOR));
}

/** Sign in: on the emulators, the local test user (created on first use); use your own sign-in elsewhere. */
export async function signIn() {
  if (!emulated) throw new Error("sign in with your app's own provider (this example signs in only on the emulators)");
  const [email, password] = ["test@promptq.local", "test-password"];
  await signInWithEmailAndPassword(auth, email, password)
    .catch(() => createUserWithEmailAndPassword(auth, email, password));
  return auth.currentUser;
}
