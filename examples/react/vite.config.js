import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  plugins: [react()],
  // Relative asset URLs: the build can be served from any folder.
  base: "./",
  resolve: {
    // @promptq/web is linked from packages/web, which has dev copies of these in its own
    // node_modules: one Firebase (one Firestore instance) and one React for the whole app.
    dedupe: ["firebase", "react", "react-dom"],
  },
});
