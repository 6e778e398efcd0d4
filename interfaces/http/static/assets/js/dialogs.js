// Modal dialogs on the native <dialog> element: focus is trapped and Escape closes them.

import { h, uid } from "./dom.js";

/** A modal dialog with a title; `build(body, close)` fills it. Resolves with close's value. */
export function modal(title, build, { wide = false } = {}) {
  return new Promise((resolve) => {
    const titleId = uid("dialog-title");
    const body = h("div", { class: "dialog-body" });
    const dialog = h("dialog", { class: wide ? "dialog wide" : "dialog", "aria-labelledby": titleId },
      h("div", { class: "dialog-head" },
        h("h2", { id: titleId }, title),
        h("button", { type: "button", class: "icon-button", "aria-label": "Close", onclick: () => close(undefined) }, "×"),
      ),
      body,
    );
    let result;
    function close(value) {
      result = value;
      dialog.close();
    }
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    build(body, close);
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Ask before something irreversible; resolves true when confirmed. */
export function confirmAction(title, message, actionLabel = "Confirm", danger = true) {
  return modal(title, (body, close) => {
    const cancel = h("button", { type: "button", class: "button subtle", onclick: () => close(false) }, "Cancel");
    const confirm = h("button", { type: "button", class: danger ? "button danger" : "button primary", onclick: () => close(true) }, actionLabel);
    body.append(h("p", {}, message), h("div", { class: "actions" }, cancel, confirm));
    queueMicrotask(() => cancel.focus()); // the safe choice has the focus
  }).then((v) => v === true);
}
