// STAC Browser's build-time config for `ingest serve` (laid over the package's config.js by build.js).
// Build-only options: served under /browser/ in hash mode, so the server needs no rewrites of deep
// links. catalogUrl/catalogTitle come at run time from /browser/config.js (ingest/web/), which knows
// the API's own root URL; the values here are only what a missing run-time config falls back to.
module.exports = {
    catalogUrl: null,
    catalogTitle: "eo-ingest",
    catalogImage: null,
    allowExternalAccess: false, // only our own API: no stacindex.org, no other hosts
    allowedDomains: [],
    detectLocaleFromBrowser: true,
    storeLocale: true,
    locale: "en",
    fallbackLocale: "en",
    supportedLocales: [
        "de",
        "ar",
//      "de-CH",
        "es",
        "en",
//      "en-GB",
//      "en-US",
        "fr",
//      "fr-CA",
//      "fr-CH",
        "it",
//      "it-CH",
        "ro",
        "ja",
        "pt",
//      "pt-BR",
        "id",
        "pl"
    ],
    apiCatalogPriority: null,
    useTileLayerAsFallback: false,
    displayGeoTiffByDefault: false,
    displayPreview: true,
    displayOverview: true,
    buildTileUrlTemplate: null,
    getMapSourceOptions: null,
    pathPrefix: "/browser/",
    historyMode: "hash",
    cardViewMode: "cards",
    cardViewSort: "asc",
    showKeywordsInItemCards: false,
    showKeywordsInCatalogCards: false,
    showThumbnailsAsAssets: false,
    searchResultsPerPage: null,
    itemsPerPage: null,
    collectionsPerPage: null,
    maxEntriesPerPage: 1000,
    defaultThumbnailSize: null,
    crossOriginMedia: null,
    requestHeaders: {},
    requestQueryParameters: {},
    socialSharing: ['email', 'bsky', 'mastodon', 'x'],
    preprocessSTAC: null,
    authConfig: null,
    crs: {},
    noSourceMaps: true, // the source maps would triple the size of dist/
    basemapUrl: null, // ours (overlay/basemaps.config.js): an XYZ tile URL template; none by default
    footerLinks: null
};
