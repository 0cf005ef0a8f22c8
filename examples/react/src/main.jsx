import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App.jsx";
import { signIn } from "./firebase.js";

const root = createRoot(document.getElementById("root"));
signIn().then(
  (user) => root.render(<StrictMode><App user={user} /></StrictMode>),
  (err) => root.render(<p id="error" role="alert">{`sign-in failed: ${err.message}`}</p>),
);
