"""Components shared by the plugin's models and the comparison presets."""
