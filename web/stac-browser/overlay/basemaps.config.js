// STAC Browser's basemaps for `ingest serve` (laid over the package's basemaps.config.js by build.js).
// The package's default is OpenStreetMap's tile server: a request to an outside host on every map, which
// a closed network cannot make and OSM's tile policy discourages. No basemap by default: the map shows
// the footprints alone. An operator with a tile server sets INGEST_BROWSER_BASEMAP_URL, which
// /browser/config.js hands over as `basemapUrl` (an XYZ template such as https://tiles.example/{z}/{x}/{y}.png).
import CONFIG from './src/config';

export default function configureBasemap() {
  if (!CONFIG.basemapUrl) {
    return [];
  }
  return [
    {
      url: CONFIG.basemapUrl,
      is: 'XYZ',
      title: 'Basemap',
      attributions: CONFIG.basemapAttribution || '',
      projection: 'EPSG:3857',
    },
  ];
}
