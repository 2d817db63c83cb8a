// The sky page: Aladin Lite (the vendored npm package) over the archive's own HiPS survey, the outlines of
// the images the asker may see (GET /api/search/footprints with the page's search parameters), their names
// under the cursor, a click to open one, and "Search this view" (a cone search of the circle in view).
// The same script runs the sky embed (app/templates/embed_sky.html, data-embed): no list, and a click opens
// the image in a new tab rather than in the frame.

const element = document.getElementById("sky");
const status = document.getElementById("sky-status");
const hover = document.getElementById("sky-hover");
const list = document.getElementById("sky-list");
const DEG = Math.PI / 180;

// An image's outline on its tangent plane at (ra0, dec0): a point is inside when its gnomonic projection is
// inside the projected polygon (the outlines are small beside a hemisphere).
function project(ra, dec, ra0, dec0) {
  const cosc = Math.sin(dec0 * DEG) * Math.sin(dec * DEG) +
    Math.cos(dec0 * DEG) * Math.cos(dec * DEG) * Math.cos((ra - ra0) * DEG);
  if (cosc <= 0) {
    return null;
  }
  const x = Math.cos(dec * DEG) * Math.sin((ra - ra0) * DEG) / cosc;
  const y = (Math.cos(dec0 * DEG) * Math.sin(dec * DEG) -
    Math.sin(dec0 * DEG) * Math.cos(dec * DEG) * Math.cos((ra - ra0) * DEG)) / cosc;
  return [x, y];
}

function outline(image) {
  const [ra0, dec0] = image.center;
  const points = image.corners.map(([ra, dec]) => project(ra, dec, ra0, dec0));
  if (points.some((point) => point === null)) {
    return null;
  }
  let area = 0;
  for (let i = 0; i < points.length; i++) {
    const [x1, y1] = points[i], [x2, y2] = points[(i + 1) % points.length];
    area += x1 * y2 - x2 * y1;
  }
  return { image, points, area: Math.abs(area) / 2 };
}

function inside(shape, ra, dec) {
  const point = project(ra, dec, shape.image.center[0], shape.image.center[1]);
  if (!point) {
    return false;
  }
  const [x, y] = point, polygon = shape.points;
  let odd = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i], [xj, yj] = polygon[j];
    if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) {
      odd = !odd;
    }
  }
  return odd;
}

// The image under (ra, dec): the smallest outline holding it (the most detailed view of that place).
function imageAt(shapes, ra, dec) {
  let best = null;
  for (const shape of shapes) {
    if (inside(shape, ra, dec) && (!best || shape.area < best.area)) {
      best = shape;
    }
  }
  return best ? best.image : null;
}

// Where to look first: the newest image, with a field of view holding the others near it.
function firstView(images) {
  if (!images.length) {
    return { target: "0 0", fov: 180 };
  }
  const [ra0, dec0] = images[0].center;
  let widest = 0;
  for (const image of images) {
    for (const [ra, dec] of [image.center, ...image.corners]) {
      const cosd = Math.sin(dec0 * DEG) * Math.sin(dec * DEG) +
        Math.cos(dec0 * DEG) * Math.cos(dec * DEG) * Math.cos((ra - ra0) * DEG);
      widest = Math.max(widest, Math.acos(Math.min(1, Math.max(-1, cosd))) / DEG);
    }
  }
  return { target: `${ra0} ${dec0}`, fov: Math.min(180, Math.max(0.05, 2.4 * widest)) };
}

async function errorOf(response) {
  try {
    const answer = await response.json();
    return answer.error || response.statusText;
  } catch (error) {
    return response.statusText;
  }
}

async function start() {
  const response = await fetch(element.dataset.footprints, { headers: { Accept: "application/json" } });
  if (!response.ok) {
    status.textContent = `The images cannot be shown: ${await errorOf(response)}`;
    return;
  }
  const data = await response.json();
  const { default: A } = await import(element.dataset.aladin);
  await A.init;
  const view = firstView(data.images);
  if (element.dataset.target) {  // the page was asked to look there first
    view.target = element.dataset.target;
  }
  if (element.dataset.fov) {
    view.fov = Number(element.dataset.fov);
  }
  const options = {
    target: view.target, fov: view.fov, projection: "AIT", cooFrame: "equatorial", showCooGrid: true,
    showReticle: false, showSimbadPointerControl: false, showShareControl: false, log: false,
  };
  if (element.dataset.survey) {
    options.survey = new URL(element.dataset.survey, window.location.href).href;
  }
  const aladin = A.aladin(element, options);
  if (element.dataset.ownSurvey) {  // the user's own private images, over the shared survey
    aladin.setOverlayImageLayer(new URL(element.dataset.ownSurvey, window.location.href).href, "own");
  }
  const overlay = A.graphicOverlay({ color: "#4fc3f7", lineWidth: 2 });
  aladin.addOverlay(overlay);
  overlay.addFootprints(data.images.map((image) => A.polygon(image.corners)));
  const shapes = data.images.map(outline).filter((shape) => shape !== null);

  for (const image of list ? data.images : []) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = image.url;
    link.textContent = image.name;  // text, never markup: names come from file headers
    item.append(link);
    list.append(item);
  }
  const more = data.total > data.images.length ? ` (the newest ${data.images.length} of ${data.total})` : "";
  status.textContent = data.images.length
    ? `${data.images.length} image${data.images.length === 1 ? "" : "s"} outlined${more}`
    : "No image you may see has a sky position" + (element.dataset.footprints.includes("?") ? " among these results" : "");

  aladin.on("mouseMove", (event) => {
    const found = event.ra === null || event.ra === undefined ? null : imageAt(shapes, event.ra, event.dec);
    hover.textContent = found ? found.name : "";
    element.style.cursor = found ? "pointer" : "";
  });
  aladin.on("click", (event) => {
    if (event.isDragging) {
      return;
    }
    const found = imageAt(shapes, event.ra, event.dec);
    if (found && element.dataset.embed) {
      window.open(new URL(found.url, window.location.href).href, "_blank", "noopener");
    } else if (found) {
      window.location.href = found.url;
    }
  });
  const search = document.getElementById("sky-search");
  if (search && element.dataset.cone) {
    search.addEventListener("click", () => {
      const [ra, dec] = aladin.getRaDec();
      const [width, height] = aladin.getFov();
      const radius = Math.min(180, Math.min(width, height) / 2);
      const cone = element.dataset.cone;
      const query = new URLSearchParams({
        [`${cone}_ra`]: ra.toFixed(6), [`${cone}_dec`]: dec.toFixed(6), [`${cone}_radius`]: `${radius.toPrecision(6)}deg`,
      });
      window.location.href = `/search?${query}`;
    });
  }
  window.imagexSky = { aladin, images: data.images, imageAt: (ra, dec) => imageAt(shapes, ra, dec) };
  element.dataset.ready = "true";
}

start().catch((error) => {
  status.textContent = `The sky cannot be shown: ${error}`;
});
